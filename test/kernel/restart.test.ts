// SPDX-License-Identifier: Apache-2.0
// An agent restart: the pins outlive the process that made them.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { EbpfDatapath } from '../../src/datapath/index.ts';
import { clientScript } from '../../src/datapath/selftest/run.ts';
import { VIP4, withBed } from './helpers/bed.ts';
import { kernelTest } from './helpers/kernel-test.ts';

/** bpftool's view of what is attached to one cgroup. */
function attached(cgroup: string): Array<{ id: number; attach_type: string; name: string }> {
  return JSON.parse(execFileSync('bpftool', ['-j', 'cgroup', 'show', cgroup], { encoding: 'utf8' }) || '[]');
}

kernelTest('an agent restart reuses the pins, attaches nothing twice, and an established redirected connection keeps flowing', async (t) => {
  await withBed(t, async (bed) => {
    await bed.captureApp();
    t.is(attached(bed.scratch.cgroupRoot).length, 4);

    // A long-lived client: one frame per line on stdin, one JSON line back.
    const child = bed.scratch.spawn('app', process.execPath, [clientScript(), JSON.stringify({ host: VIP4, port: 80, interactive: true })]);
    const replies = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    const frame = async (size: number) => {
      child.stdin!.write(`${size}\n`);
      return JSON.parse((await replies.next()).value as string) as { ok: boolean; role: string; info: { address: string } };
    };
    t.like(await frame(4096), { ok: true, role: 'PROXY', info: { address: VIP4 } });
    const before = bed.dp.counters();

    // The agent goes away without detaching, as a crash or an upgrade would.
    await bed.dp.close();
    t.like(await frame(4096), { ok: true, role: 'PROXY' }, 'the spliced connection works with no agent at all');

    // What an older version left pinned beside (its counters, before the same-node ones): dropped on open.
    execFileSync('bpftool', ['map', 'create', `${bed.scratch.pinDir}/km_stats_v1`, 'type', 'array', 'key', '4', 'value', '8', 'entries', '1', 'name', 'km_stats_v1']);
    bed.dp = await EbpfDatapath.open(bed.options());
    t.false(existsSync(`${bed.scratch.pinDir}/km_stats_v1`), 'a retired pin is removed, so a drain can remove the pin directory');
    t.deepEqual([...bed.dp.reusedLinks].sort(), ['km_connect4', 'km_connect6', 'km_getsockopt', 'km_sockops']);
    bed.programIds.push(...Object.values(bed.dp.programIds()));
    const after = bed.dp.counters();
    t.true(after.msg_redirected > before.msg_redirected, 'counters kept counting in the pinned map');

    const progs = attached(bed.scratch.cgroupRoot);
    t.deepEqual(progs.map((p) => p.attach_type).sort(), ['cgroup_getsockopt', 'cgroup_inet4_connect', 'cgroup_inet6_connect', 'cgroup_sock_ops']);
    t.true(progs.every((p) => Object.values(bed.dp.programIds()).includes(p.id)), 'the links now run the new programs');

    // The capture map survived: nothing to re-apply for the next connect.
    t.like(await frame(65536), { ok: true, role: 'PROXY' });
    t.like(await bed.client({ host: VIP4, port: 80 }), { ok: true, role: 'PROXY', info: { address: VIP4 } });
    child.stdin!.end();
  });
});

kernelTest('after teardown nothing of ours is attached, pinned or loaded', async (t) => {
  let ids: number[] = [];
  let cgroup = '';
  let pinDir = '';
  await withBed(t, async (bed) => {
    await bed.captureApp();
    t.like(await bed.client({ host: VIP4, port: 80 }), { ok: true, role: 'PROXY' });
    ids = bed.programIds;
    cgroup = bed.scratch.cgroupRoot;
    pinDir = bed.scratch.pinDir;
  });
  const progs = JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show'], { encoding: 'utf8' })) as Array<{ id: number }>;
  t.false(progs.some((p) => ids.includes(p.id)));
  t.false(existsSync(cgroup));
  t.false(existsSync(pinDir));
});
