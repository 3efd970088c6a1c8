// The launcher (run.js) as the agent's Node handler runs it: `node <taskdir>/run.js` with the
// agent's environment, cancelled with SIGINT then SIGTERM. A fake aib-task (a shell script) in
// a temporary task folder records what it received. Run with `node --test tests/node/`.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const childProcess = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const RUN_JS = path.join(__dirname, '..', '..', 'run.js');
const { PLATFORMS, findBinary, escapeMessage, escapeGitHubData, onGitHub } = require(RUN_JS);
const FOLDER = PLATFORMS[`${process.platform}-${process.arch}`];
const unix = process.platform !== 'win32';

/** A task folder holding run.js and, when `script` is given, a fake binary running it. */
function taskFolder(script) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aib-run-'));
  fs.copyFileSync(RUN_JS, path.join(dir, 'run.js'));
  if (script !== undefined) {
    fs.mkdirSync(path.join(dir, 'bin', FOLDER), { recursive: true });
    // Written without the run bit, as tfx unpacks it: run.js must set it.
    fs.writeFileSync(path.join(dir, 'bin', FOLDER, 'aib-task'), `#!/bin/sh\n${script}\n`, { mode: 0o644 });
  }
  return dir;
}

/** Runs `node run.js` in `dir`; resolves with its exit code, signal and output. */
function launch(dir, env = {}, onSpawn = () => {}) {
  return new Promise((resolve, reject) => {
    // Neither host's marker leaks in from the machine running the tests (CI may be GitHub).
    const base = { ...process.env };
    delete base.GITHUB_ACTIONS;
    delete base.TF_BUILD;
    const child = childProcess.spawn(process.execPath, [path.join(dir, 'run.js')], {
      cwd: dir,
      env: { ...base, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr }));
    onSpawn(child);
  });
}

async function waitFor(file, ms = 10000) {
  const end = Date.now() + ms;
  while (!fs.existsSync(file)) {
    if (Date.now() > end) throw new Error(`${file} never appeared`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('every platform of the release pipeline has a folder', () => {
  assert.deepEqual(Object.values(PLATFORMS).filter((f) => f !== 'win-arm64').sort(), [
    'linux-arm64',
    'linux-x64',
    'osx-arm64',
    'osx-x64',
    'win-x64',
  ]);
  assert.ok(FOLDER, `this machine (${process.platform}-${process.arch}) has a folder`);
});

test('the launcher does not load azure-pipelines-task-lib or any other package', () => {
  const source = fs.readFileSync(RUN_JS, 'utf8');
  const required = [...source.matchAll(/require\(['"]([^'"]+)['"]\)/g)].map((m) => m[1]);
  assert.deepEqual(required.sort(), ['child_process', 'fs', 'path']);
});

test('the whole environment reaches the binary, INPUT_, ENDPOINT_ and SECRET_ intact', { skip: !unix }, async () => {
  const dir = taskFolder('env > "$(dirname "$0")/env.txt"; printf "%s" "$PWD" > "$(dirname "$0")/cwd.txt"; echo hello from aib-task');
  const env = {
    INPUT_IBSUBSCRIPTION: '6f0e7c2a-1d2b-4c3d-8e9f-000000000001',
    INPUT_INLINESCRIPT: 'echo one; echo two',
    ENDPOINT_AUTH_6f0e7c2a: '{"parameters":{"serviceprincipalkey":"s3cret"},"scheme":"ServicePrincipal"}',
    ENDPOINT_AUTH_PARAMETER_6f0e7c2a_SERVICEPRINCIPALKEY: 's3cret',
    ENDPOINT_URL_6f0e7c2a: 'https://management.azure.com/',
    SECRET_MYPASSWORD: 'p@ss=word',
    SECUREFILE_TICKET_abc: 'ticket',
    SYSTEM_DEFAULTWORKINGDIRECTORY: dir,
  };
  const result = await launch(dir, env);
  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.match(result.stdout, /hello from aib-task/);
  const seen = fs.readFileSync(path.join(dir, 'bin', FOLDER, 'env.txt'), 'utf8').split('\n');
  for (const [name, value] of Object.entries(env)) {
    assert.ok(seen.includes(`${name}=${value}`), `${name} passed unchanged`);
  }
  assert.equal(fs.readFileSync(path.join(dir, 'bin', FOLDER, 'cwd.txt'), 'utf8'), fs.realpathSync(dir));
  assert.ok(fs.statSync(path.join(dir, 'bin', FOLDER, 'aib-task')).mode & 0o100, 'run bit set');
});

test("the binary's exit code is the launcher's", { skip: !unix }, async () => {
  for (const code of [0, 1, 2, 3, 130]) {
    const result = await launch(taskFolder(`exit ${code}`));
    assert.equal(result.code, code);
  }
});

test('a binary killed by a signal fails the task', { skip: !unix }, async () => {
  const result = await launch(taskFolder('kill -KILL $$'));
  assert.equal(result.code, 1);
  assert.match(result.stdout, /##vso\[task\.complete result=Failed\]aib-task was ended by SIGKILL/);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  test(`${signal} is forwarded and the launcher waits for the binary to finish`, { skip: !unix }, async () => {
    // The fake binary traps the signal, records it, "cleans up" for a moment, then exits 3.
    const dir = taskFolder(
      `here="$(dirname "$0")"\n` +
        `trap 'echo ${signal} > "$here/got"; sleep 0.3; echo cleaned > "$here/done"; exit 3' ${signal.slice(3)}\n` +
        `touch "$here/ready"\n` +
        `while :; do sleep 0.05; done`,
    );
    const here = path.join(dir, 'bin', FOLDER);
    const result = await launch(dir, {}, async (child) => {
      await waitFor(path.join(here, 'ready'));
      child.kill(signal);
    });
    assert.equal(fs.readFileSync(path.join(here, 'got'), 'utf8').trim(), signal);
    assert.ok(fs.existsSync(path.join(here, 'done')), 'the launcher waited for the clean-up');
    assert.equal(result.code, 3);
    assert.equal(result.signal, null);
  });
}

test('no binary for this platform: a clear failure through task.complete', async () => {
  const dir = taskFolder();
  const result = await launch(dir);
  assert.equal(result.code, 1);
  const lines = result.stdout.trim().split('\n');
  assert.match(lines[0], /^##vso\[task\.logissue type=error\]The Azure VM Image Builder task has no binary for /);
  assert.match(lines[1], /^##vso\[task\.complete result=Failed\]/);
  assert.match(result.stdout, /This package has binaries for: no platform/);
});

test('an unknown platform names the platforms the package has', () => {
  const dir = taskFolder('exit 0');
  const found = findBinary(dir, 'aix', 'ppc64');
  assert.equal(found.file, undefined);
  assert.match(found.error, /does not support aix-ppc64/);
  assert.match(found.error, new RegExp(`binaries for: ${FOLDER}\\.`));
  assert.equal(findBinary(dir, process.platform, process.arch).file, path.join(dir, 'bin', FOLDER, 'aib-task'));
  const win = findBinary(dir, 'win32', 'x64');
  assert.match(win.error, /win-x64.aib-task\.exe is missing/);
});

test('messages are escaped as logging commands require', () => {
  assert.equal(escapeMessage('100% done; a]b\r\nc'), '100%AZP25 done%3B a%5Db%0D%0Ac');
});

test('on a GitHub runner a missing binary is an ::error:: saying how to get one, and no ##vso line', async () => {
  const dir = taskFolder();
  const result = await launch(dir, { GITHUB_ACTIONS: 'true' });
  assert.equal(result.code, 1);
  const lines = result.stdout.trim().split('\n');
  assert.equal(lines.length, 1, result.stdout);
  assert.match(lines[0], /^::error::The Azure VM Image Builder action has no binary for /);
  assert.match(lines[0], /uses: <owner>\/aib-task@v1/);
  assert.match(lines[0], /scripts\/action-release/);
  assert.doesNotMatch(result.stdout, /##vso\[/);
});

test('the INPUT_ variables of a GitHub runner and its files reach the binary', { skip: !unix }, async () => {
  const dir = taskFolder('env > "$(dirname "$0")/env.txt"');
  const env = {
    GITHUB_ACTIONS: 'true',
    INPUT_IBAZURERESOURCEGROUP: 'rg-images',
    INPUT_INLINESCRIPT: 'echo one\necho two',
    GITHUB_OUTPUT: path.join(dir, 'output'),
    GITHUB_STEP_SUMMARY: path.join(dir, 'summary.md'),
    ACTIONS_ID_TOKEN_REQUEST_TOKEN: 'request-token',
    ACTIONS_ID_TOKEN_REQUEST_URL: 'https://example.test/idtoken?api-version=2.0',
  };
  const result = await launch(dir, env);
  assert.equal(result.code, 0, result.stdout + result.stderr);
  const seen = fs.readFileSync(path.join(dir, 'bin', FOLDER, 'env.txt'), 'utf8');
  for (const [name, value] of Object.entries(env)) {
    if (!value.includes('\n')) assert.ok(seen.split('\n').includes(`${name}=${value}`), `${name} passed unchanged`);
  }
});

test('host detection and GitHub escaping', () => {
  assert.equal(onGitHub({ GITHUB_ACTIONS: 'true' }), true);
  assert.equal(onGitHub({ GITHUB_ACTIONS: 'true', TF_BUILD: 'True' }), false);
  assert.equal(onGitHub({}), false);
  assert.equal(escapeGitHubData('100% done\r\nnext'), '100%25 done%0D%0Anext');
});
