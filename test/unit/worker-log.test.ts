// SPDX-License-Identifier: Apache-2.0
// A proxy worker's forwarded log (src/proxy/worker-log.ts) when the primary
// falls behind: held text is capped, what does not fit is dropped and counted,
// and the count is reported once the channel has caught up. The channel here
// is a function that holds its callbacks the way process.send does while the
// primary is not reading (the callback runs once the message is written).
import test from 'ava';
import { ForwardedLog, type LogLines } from '../../src/proxy/worker-log.ts';

function heldChannel() {
  const sent: string[] = [];
  const waiting: (() => void)[] = [];
  const send = (m: LogLines, done?: (err: Error | null) => void) => {
    sent.push(m.lines);
    waiting.push(() => done?.(null));
    return true;
  };
  return { sent, send, drain: () => waiting.splice(0).forEach((f) => f()) };
}

test('a worker holds at most the cap while the primary is not reading, drops the rest, and reports how many once it has caught up', (t) => {
  const ch = heldChannel();
  const reports: number[] = [];
  const log = new ForwardedLog(ch.send, { maxHeldChars: 1000, onDropped: (n) => reports.push(n) });
  const line = `${'x'.repeat(99)}\n`; // 100 chars
  for (let i = 0; i < 25; i++) {
    log.write(line);
    log.flush();
  }
  t.is(ch.sent.join('').length, 1000, 'ten lines held, no more');
  t.is(log.droppedLines, 15);
  t.deepEqual(reports, []);
  ch.drain();
  t.deepEqual(reports, [15], 'reported once, with the count');
  t.is(log.droppedLines, 0);
  log.write(line);
  log.flush();
  t.is(ch.sent.length, 11, 'lines go through again');
});

test('nothing is dropped while the primary keeps up', (t) => {
  const ch = heldChannel();
  const reports: number[] = [];
  const log = new ForwardedLog(ch.send, { maxHeldChars: 1000, onDropped: (n) => reports.push(n) });
  for (let i = 0; i < 100; i++) {
    log.write(`${'y'.repeat(99)}\n`);
    log.flush();
    ch.drain();
  }
  t.is(ch.sent.join('').length, 10_000);
  t.is(log.droppedLines, 0);
  t.deepEqual(reports, []);
});
