import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  formatDiagnostics,
  normalizeFormfile,
  parseFormfile,
  REDACTED,
  redactFormfile,
  redactSourceLine,
} from '../src/index.ts';
import { ok } from './helpers.ts';

test('normalizeFormfile: same meaning, same string; keys sorted at every level', () => {
  const a = ok('NAME app\nVCPU 1\nUSER username:u passwd:x sudo:true\nEXPOSE 80 22\n');
  const b = ok(
    '# different layout, aliases and defaults spelled out\nname app\nuser sudo=yes passwd="x" username=u\nCORES 1\nMEM 512\nEXPOSE 22\nEXPOSE 80/tcp\nWORKDIR /app/\n',
  );
  assert.equal(normalizeFormfile(a), normalizeFormfile(b));
  const text = normalizeFormfile(a);
  const keys = Object.keys(JSON.parse(text));
  assert.deepEqual(keys, [...keys].sort());
  assert.match(text, /^\{"copy":\[\],"diskGiB":5,/);
  assert.match(text, /"users":\[\{"chpasswdExpire":false,"disableRoot":true,/);
  assert.notEqual(normalizeFormfile(a), normalizeFormfile(ok('NAME app\nVCPU 2\n')));
});

test('redactFormfile hides passwords and leaves the input alone', () => {
  const spec = ok('NAME a\nUSER username:u passwd:hunter2\nUSER username:k\n');
  const red = redactFormfile(spec);
  assert.equal(red.users[0]!.passwd, REDACTED);
  assert.equal(red.users[1]!.passwd, null);
  assert.equal(spec.users[0]!.passwd, 'hunter2');
  assert.doesNotMatch(JSON.stringify(red), /hunter2/);
});

test('redactSourceLine masks passwd values of every form, keeping columns', () => {
  for (const line of [
    'USER username:u passwd:hunter2 sudo:maybe',
    'USER username:u passwd="hunter2 two" sudo:maybe',
    "USER username:u PASSWD='hunter2' sudo:maybe",
    'USER username:u passwd = hunter2 sudo:maybe',
  ]) {
    const out = redactSourceLine(line);
    assert.doesNotMatch(out, /hunter2/, line);
    assert.equal(out.length, line.length);
    assert.equal(out.indexOf('sudo'), line.indexOf('sudo'));
  }
});

test('formatDiagnostics prints file:line:col, the line and a caret, never the password', () => {
  const text = 'NAME a\nUSER username:u passwd:hunter2 sudo:maybe\n';
  const r = parseFormfile(text);
  const out = formatDiagnostics(r.errors, { file: 'Formfile', text });
  assert.equal(
    out,
    'Formfile:2:37: USER field sudo must be a boolean: expected true/false, yes/no, 1/0 or on/off, got "maybe" [FORMFILE_BAD_USER]\n' +
      '  2 | USER username:u passwd:******* sudo:maybe\n' +
      '    | ' +
      ' '.repeat(36) +
      '^\n',
  );
  const whole = formatDiagnostics(parseFormfile('VCPU 1').errors, { file: 'x/Formfile', text: 'VCPU 1' });
  assert.match(whole, /^x\/Formfile: Formfile has no NAME/);
});
