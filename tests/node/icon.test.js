// The committed icon.png is what scripts/make-icon.py draws, and a 128x128 PNG as the
// Marketplace wants.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const childProcess = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.join(__dirname, '..', '..');

test('icon.png is a 128x128 PNG drawn by scripts/make-icon.py', () => {
  const icon = fs.readFileSync(path.join(ROOT, 'icon.png'));
  assert.equal(icon.subarray(0, 8).toString('latin1'), '\x89PNG\r\n\x1a\n');
  assert.equal(icon.subarray(12, 16).toString('latin1'), 'IHDR');
  assert.equal(icon.readUInt32BE(16), 128);
  assert.equal(icon.readUInt32BE(20), 128);
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'aib-icon-')), 'icon.png');
  childProcess.execFileSync('python3', [path.join(ROOT, 'scripts', 'make-icon.py'), out]);
  assert.ok(fs.readFileSync(out).equals(icon), 'icon.png differs from the script output: run python3 scripts/make-icon.py');
});
