/**
 * Preloaded into the daemon child by the benchmark (`node [--import tsx] --import <this file>
 * <daemon entry>`): appends process.memoryUsage() to BENCH_MEM_FILE every 500 ms, so the report
 * can say what the peak RSS is made of (V8 heap, external buffers, the rest). Plain JavaScript so
 * that it loads without tsx when the daemon runs from the bundled build (dist/main.js). Does
 * nothing without the variable.
 */
import { appendFileSync } from 'node:fs';
import { setInterval } from 'node:timers';

const file = process.env.BENCH_MEM_FILE;
if (file !== undefined && file !== '') {
  setInterval(() => {
    appendFileSync(file, `${JSON.stringify({ t: Date.now(), ...process.memoryUsage() })}\n`);
  }, 500).unref();
}
