import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ok, one } from './helpers.ts';

describe('HTTPS <app port> (TLS ends in the guest, issue 19)', () => {
  test('records the app port and exposes 443 for the ingress to pass TLS through', () => {
    const spec = ok('NAME app\nEXPOSE 8080\nHTTPS 8080\n');
    assert.deepEqual(spec.https, { port: 8080 });
    assert.deepEqual(spec.expose, [443, 8080]);
    assert.equal(ok('NAME app\nEXPOSE 8080\n').https, undefined, 'off by default: other Formpack ids unchanged');
  });

  test('TERMINATE=ingress: the app port is exposed, 443 is not (the guest serves no TLS); TERMINATE=guest is the default', () => {
    const spec = ok('NAME app\nHTTPS 8080 TERMINATE=ingress\n');
    assert.deepEqual(spec.https, { port: 8080, terminate: 'ingress' });
    assert.deepEqual(spec.expose, [8080]);
    assert.deepEqual(ok('NAME app\nHTTPS 8080 terminate=guest\n'), ok('NAME app\nHTTPS 8080\n'));
  });

  test('bad values are coded errors with the position', () => {
    one('NAME app\nHTTPS web\n', 'FORMFILE_BAD_VALUE', 2, 7, /HTTPS expects the app's port/);
    one('NAME app\nHTTPS 443\n', 'FORMFILE_OUT_OF_RANGE', 2, 7, /not 443 or 4443/);
    one('NAME app\nHTTPS 70000\n', 'FORMFILE_OUT_OF_RANGE', 2, 7);
    one('NAME app\nHTTPS 8080 9090\n', 'FORMFILE_BAD_VALUE', 2, 12, /TERMINATE=guest .* or TERMINATE=ingress/);
    one('NAME app\nHTTPS 8080 TERMINATE=node\n', 'FORMFILE_BAD_VALUE', 2, 12, /TERMINATE=ingress/);
    one('NAME app\nHTTPS 8080 TERMINATE=ingress x\n', 'FORMFILE_SYNTAX', 2, 30, /HTTPS takes one port/);
    one('NAME app\nHTTPS 8080\nHTTPS 9090\n', 'FORMFILE_DUPLICATE', 3, 1);
  });
});
