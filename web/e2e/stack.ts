// The whole stack for one browser test: `demo --keep-running --no-walk
// --web dist --fresh-database --any-ports` (the sandbox, the release or
// debug binaries, a fresh database), its URLs read from its `demo-ready`
// line; stopped with SIGTERM (which drops the database) after the test.
// Also: a backend service's gRPC call, and the sandbox's webhook control.

import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { test as base, expect, type ConsoleMessage, type Page } from '@playwright/test';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const web = fileURLToPath(new URL('..', import.meta.url));

export interface Stack {
  webUrl: string;
  edgeUrl: string;
  grpcAddr: string;
  sandboxUrl: string;
  internalToken: string;
}

function demoBinary(): string {
  const candidates = [
    process.env.DEMO_BIN,
    `${repo}target/debug/demo`,
    `${repo}target/release/demo`,
  ].filter((path): path is string => !!path);
  const found = candidates.find((path) => existsSync(path));
  if (!found) throw new Error(`no demo binary (${candidates.join(', ')}): cargo build --bins first`);
  return found;
}

async function startStack(
  tokenLifetimeSecs: number,
  env: Record<string, string>,
): Promise<{ stack: Stack; child: ChildProcess }> {
  const child = spawn(
    demoBinary(),
    [
      '--keep-running',
      '--no-walk',
      '--web',
      `${web}dist`,
      '--fresh-database',
      '--any-ports',
      '--token-lifetime-secs',
      String(tokenLifetimeSecs),
    ],
    // The demo's servers inherit its environment: `env` sets theirs.
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } },
  );
  let output = '';
  const stack = await new Promise<Stack>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the demo was not ready in 60 s:\n${output}`)), 60_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const line = output.split('\n').find((l) => l.startsWith('demo-ready '));
      if (!line) return;
      clearTimeout(timer);
      const ready = JSON.parse(line.slice('demo-ready '.length));
      resolve({
        webUrl: ready.web_url,
        edgeUrl: ready.edge_url,
        grpcAddr: ready.grpc_addr,
        sandboxUrl: ready.sandbox_url,
        internalToken: ready.internal_token,
      });
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the demo exited with ${code}:\n${output}`));
    });
  });
  return { stack, child };
}

async function stopStack(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

/**
 * Chromium logs every 4xx answer as a console error. One is expected: a
 * declined card, which Stripe answers on the confirm call with 402 and its
 * error object (Stripe.js hands it to the page as `{error}`).
 */
function expectedDecline(message: ConsoleMessage): boolean {
  return (
    message.text().startsWith('Failed to load resource: the server responded with a status of 402') &&
    /\/v1\/payment_intents\/[^/]+\/confirm$/.test(message.location().url)
  );
}

/** Console errors and uncaught page errors, collected for the test to assert none. */
function watchConsole(page: Page): string[] {
  const errors: string[] = [];
  page.on('console', (message: ConsoleMessage) => {
    if (message.type() === 'error' && !expectedDecline(message)) {
      errors.push(`${message.text()} (${message.location().url})`);
    }
  });
  page.on('pageerror', (error) => errors.push(`${error.name}: ${error.message}`));
  return errors;
}

export const test = base.extend<{
  stack: Stack;
  consoleErrors: string[];
  tokenLifetimeSecs: number;
  stackEnv: Record<string, string>;
}>({
  /** How long the dev sign-in's ID tokens last (`test.use` to shorten). */
  tokenLifetimeSecs: [3600, { option: true }],
  /** Settings for the stack's servers, e.g. `{ TOPUP_TIERS_USD: '7,15' }`. */
  stackEnv: [{}, { option: true }],
  stack: async ({ tokenLifetimeSecs, stackEnv }, use) => {
    const { stack, child } = await startStack(tokenLifetimeSecs, stackEnv);
    try {
      await use(stack);
    } finally {
      await stopStack(child);
    }
  },
  // The page depends on the stack, so it closes first: the stack then stops
  // without waiting for the page's live balance stream to end.
  page: async ({ page, stack }, use) => {
    void stack;
    await use(page);
    await page.close();
  },
  // Every test, asked for or not: no console error, no uncaught exception.
  consoleErrors: [
    async ({ page }, use) => {
      const errors = watchConsole(page);
      await use(errors);
      expect(errors, 'console errors on the page').toEqual([]);
    },
    { auto: true },
  ],
});

export { expect };

/** `PaymentsService.SpendCredits`, as a backend service calls it. */
export async function spendCredits(
  stack: Stack,
  userId: string,
  amountCents: number,
  idempotencyKey: string,
): Promise<{ balance_cents: string }> {
  const definition = protoLoader.loadSync(`${repo}proto/payments/v1/payments.proto`, {
    keepCase: true,
    longs: String,
    defaults: true,
    includeDirs: [`${repo}proto`],
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    payments: { v1: { PaymentsService: grpc.ServiceClientConstructor } };
  };
  const client = new loaded.payments.v1.PaymentsService(stack.grpcAddr, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${stack.internalToken}`);
  try {
    return await new Promise((resolve, reject) => {
      (client as unknown as Record<string, (...args: unknown[]) => void>).SpendCredits!(
        { user_id: userId, amount_cents: amountCents, idempotency_key: idempotencyKey, reason: 'browser test' },
        metadata,
        (error: grpc.ServiceError | null, answer: { balance_cents: string }) => (error ? reject(error) : resolve(answer)),
      );
    });
  } finally {
    client.close();
  }
}

/** Holds (`true`) or releases Stripe's webhooks at the sandbox; answers its counters. */
export async function holdWebhooks(
  stack: Stack,
  held: boolean,
): Promise<{ held: boolean; events: number; delivered: number; pending: number }> {
  const response = await fetch(`${stack.sandboxUrl}/sandbox/webhooks`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: `held=${held}`,
  });
  if (!response.ok) throw new Error(`sandbox webhooks control answered ${response.status}`);
  return response.json();
}

export async function webhookState(stack: Stack): Promise<{ held: boolean; events: number; delivered: number; pending: number }> {
  const response = await fetch(`${stack.sandboxUrl}/sandbox/webhooks`);
  return response.json();
}
