import { FORMFILE_DEFAULTS, type FormfileSpec, type FormfileUser } from '@formation/interface';

/** A spec as the Formfile parser would produce it (tests build specs directly). */
export function makeSpec(over: Partial<FormfileSpec> = {}): FormfileSpec {
  return {
    name: 'test',
    users: [],
    vcpu: FORMFILE_DEFAULTS.vcpu,
    memMiB: FORMFILE_DEFAULTS.memMiB,
    diskGiB: FORMFILE_DEFAULTS.diskGiB,
    copy: [],
    install: [],
    run: [],
    env: [],
    expose: [],
    workdir: FORMFILE_DEFAULTS.workdir,
    entrypoint: null,
    noCopy: false,
    gpu: false,
    ...over,
  };
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
