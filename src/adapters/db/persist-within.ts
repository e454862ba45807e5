/**
 * Runs `write` until it succeeds, retrying failures (the database unreachable) with backoff up
 * to 2 s until `deadline` (epoch ms); then the last error is thrown.
 */
export async function persistWithin<T>(deadline: number, write: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await write();
    } catch (error) {
      const wait = Math.min(2_000, 100 * 2 ** attempt);
      if (Date.now() + wait > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
}
