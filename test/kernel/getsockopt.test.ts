// SPDX-License-Identifier: Apache-2.0
// cgroup/getsockopt sees every getsockopt of every captured process: options
// other than SO_ORIGINAL_DST must come back untouched, also past a page.
import { withBed } from './helpers/bed.ts';
import { kernelTest } from './helpers/kernel-test.ts';

kernelTest("a 15 KB getsockopt of another option (iptables-legacy's rule dump) comes back whole", async (t) => {
  await withBed(t, async (bed) => {
    await bed.captureApp();
    // 200 rules with comments: IPT_SO_GET_ENTRIES returns tens of KB in one getsockopt.
    const rules = Array.from({ length: 200 }, (_, i) => `-A INPUT -s 10.${i >> 8}.${i & 255}.0/24 -m comment --comment "kernmesh large getsockopt probe rule ${i}" -j ACCEPT`);
    const restore = await bed.scratch.run('app', 'iptables-legacy-restore', [], { input: `*filter\n:INPUT ACCEPT [0:0]\n${rules.join('\n')}\nCOMMIT\n` });
    t.is(restore.code, 0, restore.stderr);
    const save = await bed.scratch.run('app', 'iptables-legacy-save', ['-t', 'filter']);
    t.is(save.code, 0, save.stderr);
    const dumped = save.stdout.split('\n').filter((l) => l.includes('kernmesh large getsockopt probe rule'));
    t.is(dumped.length, 200);
    t.true(Buffer.byteLength(save.stdout) > 15_000, `the dump is ${Buffer.byteLength(save.stdout)} bytes`);
    const c = bed.dp.counters();
    t.is(c.getsockopt_answered, 0n, 'the program did not answer for an option that is not its own');
    t.true(c.getsockopt_large_passed > 0n, 'the program saw the large value and handed the kernel its own answer');
  });
});
