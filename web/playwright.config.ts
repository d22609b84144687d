import { defineConfig } from '@playwright/test';

// The seed's QA checklist in Debian's Chromium, headless, against the whole
// stack: each test starts its own (`demo --web dist --fresh-database
// --any-ports`: the sandbox, both binaries, a fresh Postgres database).
// One worker: the timing checks (3 s, 1 s) should not compete for the two
// cores with another test's stack.
export default defineConfig({
  testDir: 'e2e',
  timeout: 90_000,
  expect: { timeout: 10_000 },
  workers: 1,
  retries: 0,
  forbidOnly: true,
  reporter: [['list']],
  outputDir: 'test-results',
  use: {
    headless: true,
    launchOptions: { executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium' },
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure',
    viewport: { width: 1100, height: 720 },
  },
});
