// bench_fleet.mjs: jobs per minute of a fleet of 1, 2 and 3 workers on the
// tiny SD1 model, against one worker without Redis, on this machine (a
// benchmark to read, not a timed test):
//   node tests/fleet/bench_fleet.mjs build/sd-worker tests/data build [--jobs 90] [--steps 20]
// Each run: its own redis-server, one front (--role front) and N workers
// (--role worker, one compute thread each); all the jobs are queued at once
// (native image_generation, 64x64) and the clock runs from the first POST
// to the fleet's last completion (sdw_fleet_jobs_total on /metrics). The
// queue adds no serialisation of its own when N workers do N times the
// work of one, up to the machine's cores: on two cores, 3 workers cannot
// beat 2.
import os from 'node:os';
import { Redis, startWorker, json, sleep } from './fleet_lib.mjs';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const JOBS = arg('--jobs', 90);
const STEPS = arg('--steps', 20);

function body(i) {
  return { prompt: `bench ${i}`, width: 64, height: 64, steps: STEPS, seed: i, sampler: 'euler', preview_every: 0 };
}

async function completed(url, fleet) {
  const text = (await json(url + '/metrics')).data;
  const re = fleet ? /^sdw_fleet_jobs_total\{state="completed"\} (\d+)$/m : /^sdw_jobs_total\{state="completed"\} (\d+)$/m;
  return Number(text.match(re)?.[1] ?? 0);
}

// Queues JOBS jobs at url and waits for them; returns jobs per minute.
async function measure(url, fleet) {
  const t0 = performance.now();
  for (let i = 0; i < JOBS; i += 10) {
    const batch = [];
    for (let k = i; k < Math.min(JOBS, i + 10); k++) batch.push(json(url + '/v1/jobs', 'POST', body(k)));
    for (const r of await Promise.all(batch)) if (r.status !== 202) throw new Error(`POST: ${r.status} ${JSON.stringify(r.data)}`);
  }
  while ((await completed(url, fleet)) < JOBS) await sleep(20);
  return (JOBS * 60000) / (performance.now() - t0);
}

const rows = [];
{
  const one = await startWorker('single', null, { args: ['--queue-max', String(JOBS)] });
  rows.push(['1 worker, no Redis', await measure(one.url, false)]);
  await one.stop();
}
for (const n of [1, 2, 3]) {
  const redis = await Redis.start();
  const args = ['--queue-max', String(JOBS)];
  const front = await startWorker('front', redis.url, { role: 'front', args });
  const workers = [];
  for (let k = 0; k < n; k++) workers.push(await startWorker(`w${k}`, redis.url, { role: 'worker', args }));
  for (;;) {   // every worker registered and idle
    const w = (await json(front.url + '/v1/workers')).data.workers ?? [];
    if (w.filter((x) => x.alive && x.state === 'idle').length === n) break;
    await sleep(25);
  }
  rows.push([`${n} worker${n > 1 ? 's' : ''} on Redis`, await measure(front.url, true)]);
  for (const w of [front, ...workers]) await w.stop();
  await redis.stop();
}
console.log(`${JOBS} jobs of ${STEPS} steps at 64x64 on the tiny SD1 model, ${os.cpus().length} cores, one thread per worker:`);
const base = rows[1][1];
for (const [name, jpm] of rows)
  console.log(`  ${name.padEnd(22)} ${jpm.toFixed(0).padStart(6)} jobs/minute  (${(jpm / base).toFixed(2)}x one worker on Redis)`);
