#!/usr/bin/env node
// The entry point for the agent's Node handlers (Node20_1, Node24) and for the GitHub Action
// (action.yml, `runs.using: node24`): a dependency-free launcher for the native binary. It must not load azure-pipelines-task-lib, which deletes the
// INPUT_*, SECRET_*, ENDPOINT_AUTH_* and SECUREFILE_TICKET_* variables the binary reads.
//
// It picks bin/<platform>-<arch>/aib-task[.exe] beside this file, sets the run bit (tfx packs no
// Unix modes), runs it with the agent's stdio and the whole environment, forwards SIGINT and
// SIGTERM (the agent's cancellation), and exits with the binary's exit code.
'use strict';

const childProcess = require('child_process');
const fs = require('fs');
const path = require('path');

/** Node's platform and arch names → the folder under bin/ (the .NET-style runtime ids). */
const PLATFORMS = {
  'linux-x64': 'linux-x64',
  'linux-arm64': 'linux-arm64',
  'win32-x64': 'win-x64',
  'win32-arm64': 'win-arm64',
  'darwin-x64': 'osx-x64',
  'darwin-arm64': 'osx-arm64',
};

/** Escapes a logging command's message (REFERENCE §2): % first, then CR, LF, ] and ;. */
function escapeMessage(text) {
  return String(text)
    .replace(/%/g, '%AZP25')
    .replace(/\r/g, '%0D')
    .replace(/\n/g, '%0A')
    .replace(/]/g, '%5D')
    .replace(/;/g, '%3B');
}

/** Escapes a GitHub workflow command's data: % first, then CR and LF. */
function escapeGitHubData(text) {
  return String(text).replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

/** True when a GitHub Actions runner started us (and no Azure Pipelines agent did). */
function onGitHub(env = process.env) {
  return !/^true$/i.test(env.TF_BUILD || '') && /^true$/i.test(env.GITHUB_ACTIONS || '');
}

function fail(message) {
  if (onGitHub()) {
    process.stdout.write(`::error::${escapeGitHubData(message)}\n`);
  } else {
    process.stdout.write(`##vso[task.logissue type=error]${escapeMessage(message)}\n`);
    process.stdout.write(`##vso[task.complete result=Failed]${escapeMessage(message)}\n`);
  }
  process.exitCode = 1;
}

/** "task" in Azure Pipelines, "action" on GitHub. */
function what() {
  return onGitHub() ? 'action' : 'task';
}

/** The binary for this machine, or null with the reason. */
function findBinary(taskDir, platform, arch) {
  const key = `${platform}-${arch}`;
  const folder = PLATFORMS[key];
  const exe = platform === 'win32' ? 'aib-task.exe' : 'aib-task';
  const available = () => {
    try {
      return fs
        .readdirSync(path.join(taskDir, 'bin'))
        .filter((d) => fs.existsSync(path.join(taskDir, 'bin', d, d.startsWith('win') ? 'aib-task.exe' : 'aib-task')))
        .sort();
    } catch {
      return [];
    }
  };
  const reason = (what) =>
    `${what}. This package has binaries for: ${available().join(', ') || 'no platform'}. ` +
    (onGitHub()
      ? 'Use the action from a release tag (uses: <owner>/aib-task@v1), whose commit carries ' +
        'bin/<platform>/aib-task for every platform; a branch of the source repository has none ' +
        '(README: "GitHub Actions", scripts/action-release). Or run on a runner of a listed platform.'
      : 'Run the task on one of those agents, or install a package built for this platform.');
  if (!folder) {
    return { error: reason(`The Azure VM Image Builder ${what()} does not support ${key} (Node's platform-arch)`) };
  }
  const file = path.join(taskDir, 'bin', folder, exe);
  if (!fs.existsSync(file)) {
    return { error: reason(`The Azure VM Image Builder ${what()} has no binary for ${key}: ${file} is missing`) };
  }
  return { file };
}

function main() {
  const { file, error } = findBinary(__dirname, process.platform, process.arch);
  if (error) {
    fail(error);
    return;
  }
  if (process.platform !== 'win32') {
    try {
      fs.chmodSync(file, 0o755);
    } catch (e) {
      // A read-only task folder whose binary is already executable still works; spawn reports
      // the real problem otherwise.
    }
  }

  const child = childProcess.spawn(file, process.argv.slice(2), {
    stdio: 'inherit',
    env: process.env,
    windowsHide: true,
  });

  // Cancellation: the agent signals this process; the binary cancels the Image Builder run
  // and cleans up, so it gets the same signal and we wait for it to exit. On Windows the
  // agent's Ctrl+C / Ctrl+Break reach the binary directly (it shares our console), and Node's
  // kill() there would end it at once, so we only keep waiting.
  const forward = (signal) => {
    if (process.platform === 'win32') {
      return;
    }
    if (child.exitCode === null && child.signalCode === null) {
      try {
        child.kill(signal);
      } catch (e) {
        // Already gone.
      }
    }
  };
  const onSigint = () => forward('SIGINT');
  const onSigterm = () => forward('SIGTERM');
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigterm);
  if (process.platform === 'win32') {
    process.on('SIGBREAK', () => forward('SIGBREAK'));
  }

  child.on('error', (e) => {
    fail(`Could not start ${file}: ${e.message}`);
  });
  child.on('exit', (code, signal) => {
    process.removeListener('SIGINT', onSigint);
    process.removeListener('SIGTERM', onSigterm);
    if (signal) {
      fail(`aib-task was ended by ${signal}`);
      process.exit(1);
    }
    process.exit(code === null ? 1 : code);
  });
}

if (require.main === module) {
  main();
}

module.exports = { PLATFORMS, findBinary, escapeMessage, escapeGitHubData, onGitHub };
