// Starts `promolens serve --demo` on a free port for the browser tests (PROMOLENS_BIN names the
// binary) and hands its URL and demo keys to them through the environment; stops it at the end.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

export default async function globalSetup() {
  const bin = process.env.PROMOLENS_BIN ?? '../target/debug/promolens';
  const data = mkdtempSync(join(tmpdir(), 'promolens-console-'));
  process.env.PROMOLENS_DATA = data;
  const server = spawn(bin, ['serve', '--demo', '--data', data, '--listen', '127.0.0.1:0'], {
    env: { ...process.env, RUST_LOG: 'warn', PROMOLENS_COMPONENT_CACHE: join(data, 'components') },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: server.stdout! });
  await new Promise<void>((resolve, reject) => {
    server.on('exit', (code) => reject(new Error(`promolens serve exited with ${code}`)));
    lines.on('line', (line) => {
      const key = line.match(/^\s*(admin|ingest) key:\s+(plk_\S+)/);
      if (key) process.env[`PROMOLENS_${key[1].toUpperCase()}_KEY`] = key[2];
      const url = line.match(/^promolens listening on (\S+)/);
      if (url) {
        process.env.PROMOLENS_CONSOLE_URL = url[1];
        resolve();
      }
    });
  });
  return async () => {
    server.kill('SIGTERM');
    await new Promise((resolve) => server.on('exit', resolve));
    rmSync(data, { recursive: true, force: true });
  };
}
