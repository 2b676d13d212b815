// The console's speed (BENCHMARKS.md), measured in Debian's Chromium against `promolens serve
// --demo` (a release build: PROMOLENS_BIN): `npm run bench`. Prints figures; asserts only that the
// page showed the same numbers as the API.
import { defineConfig } from '@playwright/test';

export default defineConfig({
  testDir: 'bench',
  testMatch: '*.bench.ts',
  outputDir: 'test-results/bench',
  globalSetup: './tests/server.ts',
  workers: 1,
  timeout: Number(process.env.PROMOLENS_BENCH_TIMEOUT ?? 600_000),
  reporter: [['list']],
  use: {
    baseURL: process.env.PROMOLENS_CONSOLE_URL,
    launchOptions: { executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium' },
  },
});
