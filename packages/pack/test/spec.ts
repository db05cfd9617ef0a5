import { parseFormfile } from '@formation/formfile';
import { FORMFILE_DEFAULTS, type FormfileSpec, type FormfileUser } from '@formation/interface';

/**
 * A spec as the Formfile parser produces it (tests build specs directly): the parser's own spec of a
 * Formfile with only `NAME test`, so every default is the parser's, and `over` on top.
 */
export function makeSpec(over: Partial<FormfileSpec> = {}): FormfileSpec {
  const { spec } = parseFormfile('NAME test\n');
  if (!spec) throw new Error('the Formfile parser refused `NAME test`');
  return { ...spec, ...over };
}

export function makeUser(over: Partial<FormfileUser> & { username: string }): FormfileUser {
  return {
    passwd: null,
    sudo: false,
    sshAuthorizedKeys: [],
    sshPwauth: false,
    lockPasswd: false,
    shell: FORMFILE_DEFAULTS.shell,
    disableRoot: false,
    chpasswdExpire: false,
    groups: [],
    ...over,
  };
}

/** examples/hello-server/Formfile as a spec. */
export function helloSpec(keys: string[] = []): FormfileSpec {
  return makeSpec({
    name: 'hello-server',
    users: [
      makeUser({ username: 'bigdog', passwd: 'bigdog123', sudo: true, sshPwauth: true, sshAuthorizedKeys: keys }),
    ],
    copy: [{ src: './hello.py', dst: '/app' }],
    install: ['python3'],
    expose: [8080],
    entrypoint: { form: 'exec', argv: ['python3', '/app/hello.py'] },
  });
}
