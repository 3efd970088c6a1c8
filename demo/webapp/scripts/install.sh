#!/bin/sh
# Installs the sample web app on the image being built.
set -e
sudo mkdir -p /opt/webapp
sudo cp -r /tmp/webapp/. /opt/webapp/
echo "webapp installed"
