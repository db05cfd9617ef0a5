import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ok, one } from './helpers.ts';

describe('AUTOSTOP <idle time>|off (scale to zero, issue 22)', () => {
  test('records the idle time in minutes; off is 0; absent leaves the spec (and Formpack ids) unchanged', () => {
    assert.equal(ok('NAME app\nAUTOSTOP 10m\n').autostopMinutes, 10);
    assert.equal(ok('NAME app\nAUTOSTOP 15\n').autostopMinutes, 15);
    assert.equal(ok('NAME app\nautostop 1h30m\n').autostopMinutes, 90);
    assert.equal(ok('NAME app\nAUTOSTOP 7d\n').autostopMinutes, 10_080);
    assert.equal(ok('NAME app\nAUTOSTOP OFF\n').autostopMinutes, 0);
    assert.equal('autostopMinutes' in ok('NAME app\n'), false);
  });

  test('bad values are coded errors that say what to write, with the position', () => {
    one('NAME app\nAUTOSTOP soon\n', 'FORMFILE_BAD_VALUE', 2, 10, /expected whole minutes from 1 to 10080/);
    one('NAME app\nAUTOSTOP 30s\n', 'FORMFILE_BAD_VALUE', 2, 10, /whole minutes .*write 1m or more/);
    one('NAME app\nAUTOSTOP 1.5m\n', 'FORMFILE_BAD_VALUE', 2, 10);
    one('NAME app\nAUTOSTOP -5\n', 'FORMFILE_BAD_VALUE', 2, 10);
    one('NAME app\nAUTOSTOP 0m\n', 'FORMFILE_OUT_OF_RANGE', 2, 10, /outside 1 minute to 7 days/);
    one('NAME app\nAUTOSTOP 8d\n', 'FORMFILE_OUT_OF_RANGE', 2, 10, /11520 min/);
    one('NAME app\nAUTOSTOP 10m 20m\n', 'FORMFILE_SYNTAX', 2, 14, /AUTOSTOP takes one idle time/);
    one('NAME app\nAUTOSTOP\n', 'FORMFILE_MISSING_ARGUMENT', 2, 9, /AUTOSTOP needs a value/);
    one('NAME app\nAUTOSTOP 10m\nAUTOSTOP off\n', 'FORMFILE_DUPLICATE', 3, 1);
  });
});
