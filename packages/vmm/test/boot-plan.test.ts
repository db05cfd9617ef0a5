// Which new VMs take their identity over the guest agent (boot-plan.ts, pure): only with boot snapshots
// on, for a Formpack whose guest is known to wait for it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { identityByAgent } from '../src/boot-plan.ts';
import type { VmSource } from '../src/types.ts';

const fp = (id: string): VmSource => ({ kind: 'formpack', id, name: 'web', dir: `/formpacks/${id}` });
const templates = {
  capability: (id: string) => ({ capable: id === 'yes' ? true : id === 'no' ? false : undefined }),
};

test('identityByAgent: a Formpack known to wait, with templates on; nothing else', () => {
  assert.equal(identityByAgent(templates, true, fp('yes')), true);
  assert.equal(identityByAgent(templates, true, fp('no')), false, 'known not to wait');
  assert.equal(identityByAgent(templates, true, fp('unknown')), false, 'not known yet: classic cmdline');
  assert.equal(identityByAgent(undefined, true, fp('yes')), false, 'boot snapshots off');
  assert.equal(identityByAgent(templates, false, fp('yes')), false, 'not a Formpack VM');
  assert.equal(
    identityByAgent(templates, true, { kind: 'image', name: 'x', file: '/images/x.img', format: 'raw' }),
    false,
  );
});
