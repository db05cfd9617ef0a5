import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PortView } from '@formation/state';
import { grantsDue } from '../src/port-grants.ts';

// Which port claims an honest node grants (issue 19): never a held port, one live grant per port, the
// first pending claim by (ts, hash) so that honest nodes' grants do not split.
const p = (port: number, claim: string, ts: number, state: PortView['state'], grantedBy: string[] = []): PortView => ({
  port,
  instanceId: 'i',
  owner: `o-${claim}`,
  target: 5432,
  claim,
  ts,
  state,
  grantedBy,
});

test('grantsDue (table)', () => {
  const cases: Array<[string, PortView[], Array<{ claim: string; port: number }>]> = [
    ['a lone pending claim', [p(5432, 'c1', 10, 'pending')], [{ claim: 'c1', port: 5432 }]],
    ['already granted by me', [p(5432, 'c1', 10, 'pending', ['me'])], []],
    // The attack: a claim backdated before the holder's. The holder is active: nothing is granted.
    ['held port, backdated rival', [p(5432, 'late', 20, 'active', ['me', 'x']), p(5432, 'early', 1, 'pending')], []],
    // A node that never granted the holder (it joined later) must not grant the rival either.
    [
      'held by others’ grants, backdated rival',
      [p(5432, 'late', 20, 'active', ['x', 'y']), p(5432, 'early', 1, 'pending')],
      [],
    ],
    [
      'two pending: the first by ts',
      [p(5432, 'b', 20, 'pending'), p(5432, 'a', 30, 'pending')],
      [{ claim: 'b', port: 5432 }],
    ],
    [
      'same ts: the lower hash',
      [p(5432, 'bb', 20, 'pending'), p(5432, 'aa', 20, 'pending')],
      [{ claim: 'aa', port: 5432 }],
    ],
    [
      'I granted one not yet active: not a second',
      [p(5432, 'a', 1, 'pending', ['me']), p(5432, 'b', 2, 'pending')],
      [],
    ],
    [
      'ports are independent',
      [p(5432, 'a', 1, 'active', ['me']), p(6000, 'b', 2, 'pending')],
      [{ claim: 'b', port: 6000 }],
    ],
  ];
  for (const [name, ports, want] of cases) assert.deepEqual(grantsDue(ports, 'me'), want, name);
});
