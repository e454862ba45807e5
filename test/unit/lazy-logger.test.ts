import { Writable } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';
import { createLogger, lazyChildLogger } from '../../src/logger';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  return { lines, stream };
}

describe('lazyChildLogger', () => {
  it('makes no child for calls below the level, and logs with the bindings above it', () => {
    const { lines, stream } = capture();
    const root = createLogger('warn', stream);
    const child = vi.spyOn(root, 'child');
    const log = lazyChildLogger(root, { job: 'control-plane', jobId: '7' });
    log.info({ a: 1 }, 'quiet');
    log.debug('quiet too');
    expect(child).not.toHaveBeenCalled();
    log.warn({ a: 2 }, 'loud');
    log.error('louder');
    expect(child).toHaveBeenCalledTimes(1);
    expect(lines.map((l) => [l.msg, l.job, l.jobId])).toEqual([
      ['loud', 'control-plane', '7'],
      ['louder', 'control-plane', '7'],
    ]);
    expect(lines[0]?.a).toBe(2);
  });
});
