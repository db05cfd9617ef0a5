import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { FORMFILE_DEFAULTS } from '@formation/interface';
import { MAX_DIAGNOSTICS, parseFormfile } from '../src/index.ts';
import { bad, ok, one } from './helpers.ts';

const hello = readFileSync(new URL('../../../examples/hello-server/Formfile', import.meta.url), 'utf8');

describe('hello-server example', () => {
  test('parses to the expected spec', () => {
    const spec = ok(hello);
    assert.equal(spec.name, 'hello-server');
    assert.deepEqual(spec.users, [
      {
        username: 'bigdog',
        passwd: 'bigdog123',
        sudo: true,
        sshAuthorizedKeys: [],
        sshPwauth: true,
        lockPasswd: false,
        shell: '/bin/bash',
        disableRoot: true,
        chpasswdExpire: false,
        groups: [],
      },
    ]);
    assert.equal(spec.vcpu, 1);
    assert.equal(spec.memMiB, 512);
    assert.equal(spec.diskGiB, 5);
    assert.deepEqual(spec.copy, [{ src: 'hello.py', dst: '/app' }]);
    assert.deepEqual(spec.install, ['python3']);
    assert.equal(spec.workdir, '/app');
    assert.deepEqual(spec.expose, [8080]);
    assert.deepEqual(spec.entrypoint, { form: 'exec', argv: ['python3', '/app/hello.py'] });
    assert.equal(spec.noCopy, false);
    assert.equal(spec.gpu, false);
  });
});

describe('defaults and NAME', () => {
  test('a Formfile with only NAME gets every default', () => {
    const spec = ok('NAME app\n');
    assert.deepEqual(spec, {
      name: 'app',
      users: [],
      vcpu: FORMFILE_DEFAULTS.vcpu,
      memMiB: FORMFILE_DEFAULTS.memMiB,
      diskGiB: FORMFILE_DEFAULTS.diskGiB,
      copy: [],
      install: [],
      run: [],
      env: [],
      expose: [],
      workdir: '/app',
      entrypoint: null,
      noCopy: false,
      gpu: false,
    });
  });

  test('NAME is required (whole-file error without position)', () => {
    const errors = bad('VCPU 2\n');
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.code, 'FORMFILE_MISSING_NAME');
    assert.equal(errors[0]!.line, undefined);
    assert.equal(errors[0]!.column, undefined);
    assert.match(errors[0]!.message, /NAME my-app/);
  });

  test('empty file and comments-only file: missing NAME', () => {
    assert.equal(bad('')[0]!.code, 'FORMFILE_MISSING_NAME');
    assert.equal(bad('# just a comment\n\n   \n')[0]!.code, 'FORMFILE_MISSING_NAME');
  });

  test('NAME appears once', () => {
    one('NAME a\nNAME b\n', 'FORMFILE_DUPLICATE', 2, 1, /already set on line 1/);
  });

  test('NAME must be a DNS label', () => {
    one('NAME Hello\n', 'FORMFILE_BAD_VALUE', 1, 6, /lowercase.*did you mean "hello"/);
    one('NAME hello_server\n', 'FORMFILE_BAD_VALUE', 1, 6, /not a valid DNS label/);
    one('NAME -x\n', 'FORMFILE_BAD_VALUE', 1, 6, /DNS label/);
    one('NAME x-\n', 'FORMFILE_BAD_VALUE', 1, 6, /DNS label/);
    one(`NAME ${'a'.repeat(64)}\n`, 'FORMFILE_BAD_VALUE', 1, 6, /at most 63/);
    assert.equal(ok(`NAME ${'a'.repeat(63)}`).name.length, 63);
    assert.equal(ok('NAME 9lives').name, '9lives');
  });

  test('NAME takes exactly one word; a missing value is reported after the instruction', () => {
    one('NAME a b\n', 'FORMFILE_SYNTAX', 1, 8, /one name; unexpected "b"/);
    one('NAME\n', 'FORMFILE_MISSING_ARGUMENT', 1, 5, /NAME needs a value/);
    one('NAME   \n', 'FORMFILE_MISSING_ARGUMENT', 1, 6, /NAME needs a value/);
  });
});

describe('syntax', () => {
  test('instructions are case-insensitive', () => {
    const spec = ok('name app\nVcpu 2\nmem 1024\nDisk 10\nworkdir /srv\n');
    assert.deepEqual([spec.vcpu, spec.memMiB, spec.diskGiB, spec.workdir], [2, 1024, 10, '/srv']);
  });

  test('comments, blank lines, indentation, CRLF and a BOM are fine', () => {
    const spec = ok('\ufeff# top\r\n\r\n  NAME app\r\n\t# indented comment\r\n   VCPU 3   \r\n');
    assert.equal(spec.name, 'app');
    assert.equal(spec.vcpu, 3);
  });

  test('a # inside a line is not a comment', () => {
    const spec = ok('NAME app\nRUN echo "a # b"\n');
    assert.deepEqual(spec.run, ['echo "a # b"']);
  });

  test('backslash continuations join lines, skipping comment lines inside', () => {
    const spec = ok('NAME app\nINSTALL curl \\\n  # a comment\n  git \\\n\n  jq\nRUN echo a && \\\n    echo b\n');
    assert.deepEqual(spec.install, ['curl', 'git', 'jq']);
    assert.deepEqual(spec.run, ['echo a &&     echo b']);
  });

  test('a continuation at end of file ends the instruction', () => {
    assert.deepEqual(ok('NAME app\nINSTALL curl \\').install, ['curl']);
  });

  test('errors on continuation lines point at the physical line and column', () => {
    one('NAME app\nINSTALL curl \\\n  Bad_Pkg \\\n  git\n', 'FORMFILE_BAD_VALUE', 3, 3, /Bad_Pkg/);
    one('NAME app\nVCPU \\\n   # c\n     x\n', 'FORMFILE_BAD_VALUE', 4, 6, /whole number/);
  });

  test('unknown instructions get a did-you-mean hint', () => {
    one('NAME app\nINSTAL curl\n', 'FORMFILE_UNKNOWN_INSTRUCTION', 2, 1, /did you mean INSTALL\?/);
    one('NAME app\nWORKDRI /x\n', 'FORMFILE_UNKNOWN_INSTRUCTION', 2, 1, /did you mean WORKDIR\?/);
    one('NAME app\n  ENTRYPONT x\n', 'FORMFILE_UNKNOWN_INSTRUCTION', 2, 3, /did you mean ENTRYPOINT\?/);
    one('NAME app\nCORE 2\n', 'FORMFILE_UNKNOWN_INSTRUCTION', 2, 1, /did you mean CORES \(VCPU\)\?/);
    one('NAME app\nBANANA 2\n', 'FORMFILE_UNKNOWN_INSTRUCTION', 2, 1, /expected one of NAME, USER/);
  });

  test('Dockerfile instructions get a specific hint', () => {
    one('NAME app\nFROM debian\n', 'FORMFILE_UNKNOWN_INSTRUCTION', 2, 1, /no FROM/);
    one('NAME app\nCMD ["x"]\n', 'FORMFILE_UNKNOWN_INSTRUCTION', 2, 1, /use ENTRYPOINT/);
    one('NAME app\nADD x /y\n', 'FORMFILE_UNKNOWN_INSTRUCTION', 2, 1, /use COPY/);
  });

  test('a line that does not start with an instruction word is a syntax error', () => {
    one('NAME app\n"quoted" x\n', 'FORMFILE_SYNTAX', 2, 1, /Expected an instruction/);
  });

  test('a stray field line never echoes its value (could be a password)', () => {
    const e = one('NAME app\npasswd:hunter2\n', 'FORMFILE_SYNTAX', 2, 1);
    assert.doesNotMatch(e.message, /hunter2/);
  });

  test('unclosed quotes are reported at the opening quote', () => {
    one(
      'NAME app\nUSER username:bob ssh_authorized_keys:"ssh-ed25519 AAAA\n',
      'FORMFILE_SYNTAX',
      2,
      39,
      /Unclosed double quote/,
    );
    one("NAME app\nWORKDIR '/my dir\n", 'FORMFILE_SYNTAX', 2, 9, /Unclosed single quote/);
  });

  test('every error in the file is reported, sorted by position, missing NAME last', () => {
    const errors = bad('VCPU 0\nMEM 100\nDISK 1\nBOGUS\nEXPOSE 0\n');
    assert.deepEqual(
      errors.map((e) => [e.code, e.line, e.column]),
      [
        ['FORMFILE_OUT_OF_RANGE', 1, 6],
        ['FORMFILE_OUT_OF_RANGE', 2, 5],
        ['FORMFILE_OUT_OF_RANGE', 3, 6],
        ['FORMFILE_UNKNOWN_INSTRUCTION', 4, 1],
        ['FORMFILE_OUT_OF_RANGE', 5, 8],
        ['FORMFILE_MISSING_NAME', undefined, undefined],
      ],
    );
  });

  test('reporting stops after MAX_DIAGNOSTICS with a final note', () => {
    const text = `NAME app\n${'VCPU x\n'.repeat(MAX_DIAGNOSTICS + 50)}`;
    const r = parseFormfile(text);
    assert.equal(r.spec, null);
    assert.equal(r.errors.length, MAX_DIAGNOSTICS + 1);
    assert.match(r.errors.at(-1)!.message, /Too many errors/);
  });
});

describe('VCPU / MEM / DISK', () => {
  test('values and aliases', () => {
    assert.equal(ok('NAME a\nVCPU 4').vcpu, 4);
    assert.equal(ok('NAME a\nCPU 4').vcpu, 4);
    assert.equal(ok('NAME a\ncores 4').vcpu, 4);
    assert.equal(ok('NAME a\nMEM 2048').memMiB, 2048);
    assert.equal(ok('NAME a\nMEMORY 2048').memMiB, 2048);
    assert.equal(ok('NAME a\nMBS 2048').memMiB, 2048);
    assert.equal(ok('NAME a\nDISK 20').diskGiB, 20);
    assert.equal(ok('NAME a\nSTORAGE 20').diskGiB, 20);
  });

  test('bounds are inclusive', () => {
    assert.equal(ok('NAME a\nVCPU 1').vcpu, 1);
    assert.equal(ok('NAME a\nVCPU 128').vcpu, 128);
    assert.equal(ok('NAME a\nMEM 512').memMiB, 512);
    assert.equal(ok('NAME a\nMEM 256000').memMiB, 256000);
    assert.equal(ok('NAME a\nDISK 5').diskGiB, 5);
    assert.equal(ok('NAME a\nDISK 16384').diskGiB, 16384);
  });

  test('out of range, with the reason', () => {
    one('NAME a\nVCPU 0', 'FORMFILE_OUT_OF_RANGE', 2, 6, /between 1 and 128 vCPUs, got 0: a VM needs at least one/);
    one('NAME a\nVCPU 129', 'FORMFILE_OUT_OF_RANGE', 2, 6, /at most 128/);
    one('NAME a\nMEM 511', 'FORMFILE_OUT_OF_RANGE', 2, 5, /between 512 and 256000 MiB, got 511: a Debian guest needs/);
    one('NAME a\nMEMORY 256001', 'FORMFILE_OUT_OF_RANGE', 2, 8, /256000/);
    one('NAME a\nDISK 4', 'FORMFILE_OUT_OF_RANGE', 2, 6, /between 5 and 16384 GiB, got 4: the Debian base image/);
    one('NAME a\nSTORAGE 16385', 'FORMFILE_OUT_OF_RANGE', 2, 9, /16384/);
  });

  test('not a whole number', () => {
    one('NAME a\nVCPU -1', 'FORMFILE_BAD_VALUE', 2, 6, /whole number of vCPUs, got "-1"/);
    one('NAME a\nVCPU 1.5', 'FORMFILE_BAD_VALUE', 2, 6, /whole number/);
    one('NAME a\nVCPU two', 'FORMFILE_BAD_VALUE', 2, 6, /whole number/);
    one('NAME a\nVCPU 99999999999999999999', 'FORMFILE_BAD_VALUE', 2, 6, /whole number/);
    one('NAME a\nMEM 2G', 'FORMFILE_BAD_VALUE', 2, 5, /write MEM 2048/);
    one('NAME a\nMEMORY 1GiB', 'FORMFILE_BAD_VALUE', 2, 8, /write MEMORY 1024/);
    one('NAME a\nDISK 10GB', 'FORMFILE_BAD_VALUE', 2, 6, /write DISK 10/);
    one('NAME a\nDISK 1T', 'FORMFILE_BAD_VALUE', 2, 6, /write DISK 1024/);
  });

  test('once each, also across aliases', () => {
    one('NAME a\nVCPU 1\nCPU 2', 'FORMFILE_DUPLICATE', 3, 1, /VCPU is already set on line 2/);
    one('NAME a\nMBS 1024\nMEM 2048', 'FORMFILE_DUPLICATE', 3, 1, /MEM is already set on line 2 \(as MBS\)/);
    one('NAME a\nDISK 5\nSTORAGE 6', 'FORMFILE_DUPLICATE', 3, 1);
  });

  test('missing or extra values', () => {
    one('NAME a\nVCPU', 'FORMFILE_MISSING_ARGUMENT', 2, 5, /VCPU needs a value: VCPU <1-128>/);
    one('NAME a\nMEM 512 1024', 'FORMFILE_SYNTAX', 2, 9, /one number/);
  });
});

describe('USER', () => {
  test('all fields, key:value and key=value, booleans in every spelling', () => {
    const spec = ok(
      'NAME a\n' +
        'USER username:alice passwd="pw with spaces" sudo=yes ssh_pwauth:on lock_passwd:0 shell=/bin/sh ' +
        'disable_root:false chpasswd_expire:1 groups:adm,docker,adm ' +
        'ssh_authorized_keys:"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI alice@laptop, ssh-rsa AAAAB3NzaC1yc2E= bob@x"\n',
    );
    assert.deepEqual(spec.users[0], {
      username: 'alice',
      passwd: 'pw with spaces',
      sudo: true,
      sshAuthorizedKeys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI alice@laptop', 'ssh-rsa AAAAB3NzaC1yc2E= bob@x'],
      sshPwauth: true,
      lockPasswd: false,
      shell: '/bin/sh',
      disableRoot: false,
      chpasswdExpire: true,
      groups: ['adm', 'docker'],
    });
  });

  test('boolean spellings', () => {
    for (const [text, value] of [
      ['true', true],
      ['TRUE', true],
      ['yes', true],
      ['1', true],
      ['on', true],
      ['false', false],
      ['No', false],
      ['0', false],
      ['off', false],
    ] as const) {
      assert.equal(ok(`NAME a\nUSER username:u sudo:${text}`).users[0]!.sudo, value, text);
    }
    one(
      'NAME a\nUSER username:u sudo:maybe',
      'FORMFILE_BAD_USER',
      2,
      22,
      /sudo must be a boolean: expected true\/false, yes\/no, 1\/0 or on\/off, got "maybe"/,
    );
    one('NAME a\nUSER username:u ssh_pwauth=2', 'FORMFILE_BAD_USER', 2, 28, /ssh_pwauth must be a boolean/);
  });

  test('user defaults', () => {
    const u = ok('NAME a\nUSER username:u').users[0]!;
    assert.deepEqual(u, {
      username: 'u',
      passwd: null,
      sudo: false,
      sshAuthorizedKeys: [],
      sshPwauth: false,
      lockPasswd: false,
      shell: '/bin/bash',
      disableRoot: true,
      chpasswdExpire: false,
      groups: [],
    });
  });

  test('several USER lines; usernames unique', () => {
    const spec = ok('NAME a\nUSER username:a\nUSER username:b sudo:true\n');
    assert.deepEqual(
      spec.users.map((u) => u.username),
      ['a', 'b'],
    );
    one('NAME a\nUSER username:a\nUSER username:a\n', 'FORMFILE_DUPLICATE', 3, 15, /already defined on line 2/);
  });

  test('usernames as Linux allows', () => {
    assert.equal(ok('NAME a\nUSER username:_svc-1').users[0]!.username, '_svc-1');
    assert.equal(ok(`NAME a\nUSER username:${'u'.repeat(32)}`).users[0]!.username.length, 32);
    one(`NAME a\nUSER username:${'u'.repeat(33)}`, 'FORMFILE_BAD_USER', 2, 15, /at most 32/);
    one('NAME a\nUSER username:Bob', 'FORMFILE_BAD_USER', 2, 15, /must start with a lowercase letter/);
    one('NAME a\nUSER username:1bob', 'FORMFILE_BAD_USER', 2, 15, /must start with a lowercase letter/);
    one('NAME a\nUSER username:bo.b', 'FORMFILE_BAD_USER', 2, 15, /only lowercase letters, digits/);
    one('NAME a\nUSER username:', 'FORMFILE_BAD_USER', 2, 15, /must not be empty/);
    one('NAME a\nUSER username:root', 'FORMFILE_BAD_USER', 2, 15, /root/);
  });

  test('username is required', () => {
    one('NAME a\nUSER sudo:true', 'FORMFILE_BAD_USER', 2, 1, /needs username/);
  });

  test('unknown fields get a hint; duplicate fields are an error', () => {
    one(
      'NAME a\nUSER username:u password:x',
      'FORMFILE_BAD_USER',
      2,
      17,
      /Unknown USER field "password"; did you mean passwd\?/,
    );
    one('NAME a\nUSER username:u ssh_keys:x', 'FORMFILE_BAD_USER', 2, 17, /Unknown USER field "ssh_keys"/);
    one('NAME a\nUSER username:u sudo:1 sudo:0', 'FORMFILE_BAD_USER', 2, 24, /given twice/);
  });

  test('fields must be field:value; unquoted keys with spaces get a quoting hint', () => {
    const errors = bad('NAME a\nUSER username:u ssh_authorized_keys:ssh-ed25519 AAAAC3 me@h');
    assert.equal(errors.length, 3);
    assert.match(errors[0]!.message, /not an OpenSSH public key/);
    assert.deepEqual([errors[0]!.line, errors[0]!.column], [2, 37]);
    assert.match(errors[1]!.message, /field:value or field=value; put values with spaces in double quotes/);
    assert.deepEqual([errors[1]!.line, errors[1]!.column], [2, 49]);
  });

  test('passwd: not empty, never echoed in any message', () => {
    one('NAME a\nUSER username:u passwd:', 'FORMFILE_BAD_USER', 2, 24, /passwd must not be empty/);
    // A password written with a space (unquoted) becomes a stray word: the message must not echo it.
    const errors = bad('NAME a\nUSER username:u passwd:hunter2 s3cr3t-tail sudo:hunter2');
    for (const e of errors) {
      assert.doesNotMatch(e.message, /s3cr3t-tail/);
    }
  });

  test('ssh_pwauth:true needs a passwd', () => {
    one('NAME a\nUSER username:u ssh_pwauth:true', 'FORMFILE_BAD_USER', 2, 1, /ssh_pwauth:true needs a passwd/);
    assert.equal(ok('NAME a\nUSER username:u ssh_pwauth:true passwd:x').users[0]!.sshPwauth, true);
  });

  test('shell must be absolute; groups must be valid names', () => {
    one('NAME a\nUSER username:u shell:bash', 'FORMFILE_BAD_USER', 2, 23, /shell must be an absolute path/);
    one('NAME a\nUSER username:u groups:adm,Wheel', 'FORMFILE_BAD_USER', 2, 24, /group "Wheel"/);
  });

  test('ssh keys: comma separated, validated, empty list refused', () => {
    const u = ok('NAME a\nUSER username:u ssh_authorized_keys="ecdsa-sha2-nistp256 AAAAE2VjZHNh,ssh-ed25519 AAAAC3"')
      .users[0]!;
    assert.deepEqual(u.sshAuthorizedKeys, ['ecdsa-sha2-nistp256 AAAAE2VjZHNh', 'ssh-ed25519 AAAAC3']);
    one('NAME a\nUSER username:u ssh_authorized_keys:""', 'FORMFILE_BAD_USER', 2, 37, /empty/);
    one(
      'NAME a\nUSER username:u ssh_authorized_keys:"not a key"',
      'FORMFILE_BAD_USER',
      2,
      37,
      /not an OpenSSH public key/,
    );
  });

  test('quoted value with escaped quote', () => {
    const spec = ok('NAME a\nUSER username:u passwd:"a \\"q\\" b"');
    assert.equal(spec.users[0]!.passwd, 'a "q" b');
  });
});

describe('COPY', () => {
  test('src and dst, several COPY lines, several sources, relative and default destinations', () => {
    const spec = ok(
      'NAME a\nWORKDIR /srv/app\nCOPY ./hello.py /app\nCOPY a.txt b.txt conf/\nCOPY static\nCOPY "my file.txt" /opt/x/../y/\n',
    );
    assert.deepEqual(spec.copy, [
      { src: 'hello.py', dst: '/app' },
      { src: 'a.txt', dst: '/srv/app/conf' },
      { src: 'b.txt', dst: '/srv/app/conf' },
      { src: 'static', dst: '/srv/app' },
      { src: 'my file.txt', dst: '/opt/y' },
    ]);
  });

  test('sources must stay inside the build directory', () => {
    one('NAME a\nCOPY /etc/passwd /x', 'FORMFILE_BAD_PATH', 2, 6, /relative to the build directory, not absolute/);
    one('NAME a\nCOPY ../secret /x', 'FORMFILE_BAD_PATH', 2, 6, /outside the build directory/);
    one('NAME a\nCOPY a/../../b /x', 'FORMFILE_BAD_PATH', 2, 6, /outside the build directory/);
    assert.deepEqual(ok('NAME a\nCOPY a/../b /x').copy, [{ src: 'b', dst: '/x' }]);
    one('NAME a\nCOPY *.py /x', 'FORMFILE_BAD_PATH', 2, 6, /wildcards/);
    one('NAME a\nCOPY --chown=u:u a /x', 'FORMFILE_SYNTAX', 2, 6, /--chown are not supported/);
    one('NAME a\nCOPY', 'FORMFILE_MISSING_ARGUMENT', 2, 5, /COPY needs a value/);
  });

  test('positions of copy sources are returned for the context check', () => {
    const r = parseFormfile('NAME a\nCOPY x /a\n  COPY y z /b\n');
    assert.deepEqual(r.copyPositions, [
      { line: 2, column: 6 },
      { line: 3, column: 8 },
      { line: 3, column: 10 },
    ]);
  });
});

describe('INSTALL', () => {
  test('several lines, deduplicated in order, pinned versions', () => {
    const spec = ok('NAME a\nINSTALL python3 curl\nINSTALL curl git libc6-dev g++ python3.11 nginx=1.22.1-9\n');
    assert.deepEqual(spec.install, ['python3', 'curl', 'git', 'libc6-dev', 'g++', 'python3.11', 'nginx=1.22.1-9']);
  });

  test('invalid package names', () => {
    one('NAME a\nINSTALL Python3', 'FORMFILE_BAD_VALUE', 2, 9, /did you mean "python3"/);
    one('NAME a\nINSTALL curl x', 'FORMFILE_BAD_VALUE', 2, 14, /at least 2 characters/);
    one('NAME a\nINSTALL -y curl', 'FORMFILE_BAD_VALUE', 2, 9, /not apt options/);
    one('NAME a\nINSTALL curl;rm', 'FORMFILE_BAD_VALUE', 2, 9, /not a valid Debian package name/);
    one('NAME a\nINSTALL nginx=latest', 'FORMFILE_BAD_VALUE', 2, 9, /not a valid Debian version/);
    one('NAME a\nINSTALL', 'FORMFILE_MISSING_ARGUMENT', 2, 8);
  });
});

describe('RUN and ENTRYPOINT', () => {
  test('RUN shell form keeps the command as written; exec form is quoted for sh', () => {
    const spec = ok('NAME a\nRUN echo "hi there" > /x\nRUN ["sh", "-c", "echo it\'s"]\nrun   apt-get clean  \n');
    assert.deepEqual(spec.run, ['echo "hi there" > /x', `sh -c 'echo it'\\''s'`, 'apt-get clean']);
  });

  test('RUN needs a command', () => {
    one('NAME a\nRUN   ', 'FORMFILE_MISSING_ARGUMENT', 2, 5);
  });

  test('ENTRYPOINT exec form and shell form', () => {
    assert.deepEqual(ok('NAME a\nENTRYPOINT ["python3", "-m", "http.server", "8080"]').entrypoint, {
      form: 'exec',
      argv: ['python3', '-m', 'http.server', '8080'],
    });
    assert.deepEqual(ok('NAME a\nENTRYPOINT ["a\\"b", "\\u00e9"]').entrypoint, { form: 'exec', argv: ['a"b', 'é'] });
    assert.deepEqual(ok('NAME a\nENTRYPOINT python3 /app/hello.py --port 8080').entrypoint, {
      form: 'shell',
      command: 'python3 /app/hello.py --port 8080',
    });
  });

  test('JSON exec form must be a JSON array of strings, errors point inside it', () => {
    one('NAME a\nENTRYPOINT ["python3", 8080]', 'FORMFILE_SYNTAX', 2, 24, /JSON array of strings: expected a "string"/);
    one("NAME a\nENTRYPOINT ['python3']", 'FORMFILE_SYNTAX', 2, 13, /single quotes are not JSON/);
    one('NAME a\nENTRYPOINT ["python3" "x"]', 'FORMFILE_SYNTAX', 2, 23, /expected "," or "]"/);
    one('NAME a\nENTRYPOINT ["python3", "x"', 'FORMFILE_SYNTAX', 2, 27, /not closed/);
    one('NAME a\nENTRYPOINT ["python3"] extra', 'FORMFILE_SYNTAX', 2, 24, /after the closing/);
    one('NAME a\nENTRYPOINT []', 'FORMFILE_SYNTAX', 2, 12, /empty/);
    one('NAME a\nENTRYPOINT ["unterminated]', 'FORMFILE_SYNTAX', 2, 13, /string is not closed/);
    one('NAME a\nENTRYPOINT ["\\x"]', 'FORMFILE_SYNTAX', 2, 13, /invalid escape/);
    one('NAME a\nRUN ["ok", 1]', 'FORMFILE_SYNTAX', 2, 12, /RUN exec form must be a JSON array of strings/);
  });

  test('ENTRYPOINT once', () => {
    one('NAME a\nENTRYPOINT a\nENTRYPOINT b', 'FORMFILE_DUPLICATE', 3, 1, /already set on line 2/);
  });
});

describe('ENV', () => {
  test('scopes, several pairs, quoted values, later value wins within a scope', () => {
    const spec = ok(
      'NAME a\nENV A=1 B="two words"\nENV --scope=user:alice A=u\nENV --scope=service:web.service PORT=8080\nENV --scope=system A=3 EMPTY=\n',
    );
    assert.deepEqual(spec.env, [
      { key: 'A', value: '3', scope: { kind: 'system' } },
      { key: 'B', value: 'two words', scope: { kind: 'system' } },
      { key: 'A', value: 'u', scope: { kind: 'user', name: 'alice' } },
      { key: 'PORT', value: '8080', scope: { kind: 'service', name: 'web.service' } },
      { key: 'EMPTY', value: '', scope: { kind: 'system' } },
    ]);
  });

  test('values may contain = and :', () => {
    assert.deepEqual(ok('NAME a\nENV URL=http://x/?a=b').env[0], {
      key: 'URL',
      value: 'http://x/?a=b',
      scope: { kind: 'system' },
    });
  });

  test('bad scopes and pairs', () => {
    one(
      'NAME a\nENV --scope=global A=1',
      'FORMFILE_BAD_VALUE',
      2,
      13,
      /system, user:<name> or service:<name>, got "global"/,
    );
    one('NAME a\nENV --scope=user: A=1', 'FORMFILE_BAD_VALUE', 2, 18, /username must not be empty/);
    one('NAME a\nENV --scope=service: A=1', 'FORMFILE_BAD_VALUE', 2, 21, /service name/);
    one('NAME a\nENV --region=x A=1', 'FORMFILE_SYNTAX', 2, 5, /Unknown ENV option "--region"/);
    one('NAME a\nENV --scope=system', 'FORMFILE_MISSING_ARGUMENT', 2, 19, /KEY=value/);
    const legacy = bad('NAME a\nENV KEY value');
    assert.deepEqual([legacy[0]!.code, legacy[0]!.line, legacy[0]!.column], ['FORMFILE_SYNTAX', 2, 5]);
    assert.match(legacy[0]!.message, /expects KEY=value, got "KEY"/);
    one('NAME a\nENV 1KEY=x', 'FORMFILE_BAD_VALUE', 2, 5, /ENV name "1KEY" is invalid/);
    one('NAME a\nENV =x', 'FORMFILE_BAD_VALUE', 2, 5, /ENV name "" is invalid/);
  });
});

describe('EXPOSE', () => {
  test('several ports, sorted and unique, /tcp allowed', () => {
    assert.deepEqual(ok('NAME a\nEXPOSE 8080 22\nEXPOSE 443/tcp 22 1 65535').expose, [1, 22, 443, 8080, 65535]);
  });

  test('bad ports', () => {
    one('NAME a\nEXPOSE 0', 'FORMFILE_OUT_OF_RANGE', 2, 8, /between 1 and 65535/);
    one('NAME a\nEXPOSE 65536', 'FORMFILE_OUT_OF_RANGE', 2, 8);
    one('NAME a\nEXPOSE http', 'FORMFILE_BAD_VALUE', 2, 8, /port number/);
    one('NAME a\nEXPOSE 53/udp', 'FORMFILE_BAD_VALUE', 2, 10, /TCP ports only/);
    one('NAME a\nEXPOSE', 'FORMFILE_MISSING_ARGUMENT', 2, 7);
  });
});

describe('WORKDIR', () => {
  test('absolute, normalized, default /app, once', () => {
    assert.equal(ok('NAME a').workdir, '/app');
    assert.equal(ok('NAME a\nWORKDIR /srv/my-app/').workdir, '/srv/my-app');
    assert.equal(ok('NAME a\nWORKDIR "/srv/my app"').workdir, '/srv/my app');
    one('NAME a\nWORKDIR app', 'FORMFILE_BAD_PATH', 2, 9, /absolute path/);
    one('NAME a\nWORKDIR /srv/../etc', 'FORMFILE_BAD_PATH', 2, 9, /\. or \.\./);
    one('NAME a\nWORKDIR /a\nWORKDIR /b', 'FORMFILE_DUPLICATE', 3, 1, /already set on line 2/);
    one('NAME a\nWORKDIR /a /b', 'FORMFILE_SYNTAX', 2, 12, /one path/);
  });
});

describe('NOCOPY and GPU', () => {
  test('NOCOPY before ENTRYPOINT', () => {
    const spec = ok('NAME a\nNOCOPY\nENTRYPOINT ["x"]');
    assert.equal(spec.noCopy, true);
    one('NAME a\nENTRYPOINT ["x"]\nNOCOPY', 'FORMFILE_ORDER', 3, 1, /NOCOPY must come before ENTRYPOINT \(line 2\)/);
    one('NAME a\nNOCOPY now', 'FORMFILE_SYNTAX', 2, 8, /takes no arguments/);
    one('NAME a\nNOCOPY\nnocopy', 'FORMFILE_DUPLICATE', 3, 1);
  });

  test('GPU with or without a boolean', () => {
    assert.equal(ok('NAME a\nGPU').gpu, true);
    assert.equal(ok('NAME a\nGPU yes').gpu, true);
    assert.equal(ok('NAME a\nGPU off').gpu, false);
    one('NAME a\nGPU nvidia', 'FORMFILE_BAD_VALUE', 2, 5, /GPU must be a boolean/);
    one('NAME a\nGPU\nGPU', 'FORMFILE_DUPLICATE', 3, 1);
  });
});

describe('bad input', () => {
  test('a 10 MB input is refused quickly with a clear whole-file error', () => {
    const big = `NAME a\n${'RUN echo aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n'.repeat(200_000)}`;
    assert.ok(big.length > 10_000_000);
    const r = parseFormfile(big);
    assert.equal(r.spec, null);
    assert.equal(r.errors.length, 1);
    assert.equal(r.errors[0]!.code, 'FORMFILE_TOO_LARGE');
    assert.match(r.errors[0]!.message, /larger than 1 MiB/);
    assert.equal(r.errors[0]!.line, undefined);
  });

  test('a multi-byte text just over 1 MiB in UTF-8 is refused too', () => {
    const r = parseFormfile(`NAME a\n# ${'é'.repeat(600_000)}\n`);
    assert.equal(r.errors[0]!.code, 'FORMFILE_TOO_LARGE');
  });

  test('binary garbage: NUL bytes give FORMFILE_BINARY with a position', () => {
    const r = parseFormfile('NAME a\nVCPU 1\x00\x01\x02');
    assert.deepEqual(r.errors, [
      { code: 'FORMFILE_BINARY', message: 'Formfile contains a NUL byte: it is not a text file', line: 2, column: 7 },
    ]);
  });

  test('random bytes without NUL: errors, never an exception', () => {
    let seed = 42;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    for (let k = 0; k < 50; k++) {
      let s = '';
      for (let i = 0; i < 2000; i++) s += String.fromCharCode(1 + (rand() % 300));
      const r = parseFormfile(s);
      assert.equal(r.spec, null);
      for (const e of r.errors) assert.ok(e.code.startsWith('FORMFILE_'));
    }
  });
});
