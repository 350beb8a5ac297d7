// The folder lock: one holder at a time, a live holder named in the refusal, a dead or
// half-written holder's lock taken over with a message, release removing only its own lock.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { acquireFolderLock, LOCK_FILE, LockHeldError } from '../../../src/util/lock.js';
import { UserError } from '../../../src/errors.js';
import { tempDir } from '../../helpers.js';

const deadPid = () => spawnSync(process.execPath, ['-e', '']).pid!;

test('a held lock refuses a second taker (even this process) naming pid and file; release frees it', () => {
  const dir = join(tempDir(), 'out');
  const lock = acquireFolderLock(dir, 'kd cache build');
  assert.equal(lock.path, join(dir, LOCK_FILE));
  assert.deepEqual(JSON.parse(readFileSync(lock.path, 'utf8')), { pid: process.pid, host: hostname(), command: 'kd cache build' });
  assert.throws(
    () => acquireFolderLock(dir, 'kd cache merge'),
    (e: Error) =>
      e instanceof LockHeldError &&
      e instanceof UserError &&
      e.message.includes(`is in use by kd cache build (pid ${process.pid}; lock file ${lock.path})`),
  );
  lock.release();
  assert.equal(existsSync(lock.path), false);
  acquireFolderLock(dir, 'kd cache merge').release();
});

test("a dead owner's lock and a half-written old one are taken over with a message", () => {
  const dir = tempDir();
  const path = join(dir, LOCK_FILE);
  const pid = deadPid();
  writeFileSync(path, JSON.stringify({ pid, host: hostname(), command: 'kd cache build' }));
  const lines: string[] = [];
  const lock = acquireFolderLock(dir, 'kd cache build', (l) => lines.push(l));
  assert.deepEqual(lines, [`kd cache build: took over the stale lock ${path} of pid ${pid} (kd cache build), which is no longer running`]);
  assert.equal(JSON.parse(readFileSync(path, 'utf8')).pid, process.pid);
  lock.release();
  writeFileSync(path, '');
  utimesSync(path, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
  const again = acquireFolderLock(dir, 'kd cache build', (l) => lines.push(l));
  assert.match(lines[1]!, /took over the stale lock .* \(unreadable: its owner died while writing it\)/);
  again.release();
});

test('a lock from another host is never presumed dead; release leaves a lock it does not own', () => {
  const dir = tempDir();
  const path = join(dir, LOCK_FILE);
  writeFileSync(path, JSON.stringify({ pid: deadPid(), host: 'elsewhere', command: 'kd cache build' }));
  assert.throws(() => acquireFolderLock(dir, 'kd cache build'), /\(pid \d+ on elsewhere; lock file/);
  const other = join(tempDir(), 'o');
  mkdirSync(other);
  const lock = acquireFolderLock(other, 'kd cache build');
  const theirs = JSON.stringify({ pid: 1, host: hostname(), command: 'kd train' });
  writeFileSync(lock.path, theirs); // taken over by another process after we were presumed dead
  lock.release();
  assert.equal(readFileSync(lock.path, 'utf8'), theirs);
});
