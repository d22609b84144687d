// The seed's QA checklist, clicked through in Chromium against the whole
// stack. Each test signs in as a user of its own on a stack of its own,
// keeps a screenshot of each step (test-results/), and ends with no
// console error on the page (the consoleErrors fixture).

import { mkdirSync } from 'node:fs';

import type { Page, TestInfo } from '@playwright/test';

import { type Stack, expect, holdWebhooks, spendCredits, test, webhookState } from './stack';

async function shot(page: Page, info: TestInfo, name: string): Promise<void> {
  const path = info.outputPath(`${name}.png`);
  await page.screenshot({ path });
  await info.attach(name, { path, contentType: 'image/png' });
  // The README's pictures: `SCREENSHOTS_DIR=../docs/web npx playwright test`.
  const dir = process.env.SCREENSHOTS_DIR;
  if (dir) {
    mkdirSync(dir, { recursive: true });
    await page.screenshot({ path: `${dir}/${name}.png` });
  }
}

async function signIn(page: Page, stack: Stack, uid: string): Promise<void> {
  await page.goto(stack.webUrl);
  await page.getByLabel('User id').fill(uid);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(balance(page)).toHaveText('$0.00');
  await expect(page.getByTestId('live-state')).toHaveText('Live');
}

const balance = (page: Page) => page.getByTestId('balance');

/** Opens the dialog, picks `amountUsd`, and types the card; leaves "Pay" to the test. */
async function fillTopUp(page: Page, amountUsd: number, card: string): Promise<void> {
  await page.getByRole('button', { name: 'Add credits' }).click();
  const dialog = page.getByRole('dialog', { name: 'Add credits' });
  await expect(dialog).toBeVisible();
  await dialog.getByText(`$${amountUsd}`, { exact: true }).click();
  await dialog.getByRole('button', { name: 'Continue to payment' }).click();
  await dialog.getByLabel('Card number').fill(card);
  await dialog.getByLabel('Expiration date').fill('12 / 34');
  await dialog.getByLabel('Security code').fill('123');
}

const payButton = (page: Page, amountUsd: number) =>
  page.getByRole('dialog', { name: 'Add credits' }).getByRole('button', { name: `Pay $${amountUsd}.00` });

test('pay $10 with 4242 4242 4242 4242: the sidebar shows it within 3 s, before any webhook, and the history lists it', async ({
  page,
  stack,
}, info) => {
  await signIn(page, stack, 'qa-success');
  await holdWebhooks(stack, true);
  await fillTopUp(page, 10, '4242 4242 4242 4242');
  await shot(page, info, 'topup-dialog');

  await payButton(page, 10).click();
  await expect(balance(page)).toHaveText('$10.00', { timeout: 3_000 });
  const held = await webhookState(stack);
  expect(held.delivered, 'no webhook delivered yet: the sync credited it').toBe(0);
  expect(held.pending).toBeGreaterThan(0);
  await expect(page.getByRole('status')).toContainText('Payment received: $10.00 added.');
  await shot(page, info, 'topup-done');
  await page.getByRole('button', { name: 'Done' }).click();
  await expect(page.getByRole('dialog')).toHaveCount(0);
  await expect(page.getByRole('button', { name: 'Add credits' })).toBeFocused();

  const payments = page.getByRole('table', { name: 'Payments' });
  await expect(payments.getByRole('row')).toHaveCount(2);
  await expect(payments.getByRole('row').nth(1)).toContainText('$10.00');
  await expect(payments.getByRole('row').nth(1)).toContainText('Paid');
  const ledger = page.getByRole('table', { name: 'Credits history' });
  await expect(ledger.getByRole('row').nth(1)).toContainText('Top-up');
  await expect(ledger.getByRole('row').nth(1)).toContainText('+$10.00');

  // The webhooks arrive late: nothing is credited twice.
  await holdWebhooks(stack, false);
  await expect.poll(async () => (await webhookState(stack)).pending).toBe(0);
  expect((await webhookState(stack)).delivered).toBeGreaterThan(0);
  await page.reload();
  await expect(balance(page)).toHaveText('$10.00');
  await expect(ledger.getByRole('row')).toHaveCount(2);
  await shot(page, info, 'history');
});

test('3-D Secure completed credits the payment; failed shows a friendly message and changes nothing', async ({
  page,
  stack,
}, info) => {
  await signIn(page, stack, 'qa-3ds');

  await fillTopUp(page, 20, '4000 0025 0000 3155');
  await payButton(page, 20).click();
  const challenge = page.getByRole('dialog', { name: '3D Secure 2 Test Page' });
  await expect(challenge).toBeVisible();
  await shot(page, info, '3ds-challenge');
  await challenge.getByRole('button', { name: 'Complete' }).click();
  await expect(balance(page)).toHaveText('$20.00', { timeout: 3_000 });
  await page.getByRole('button', { name: 'Done' }).click();

  await fillTopUp(page, 5, '4000 0025 0000 3155');
  await payButton(page, 5).click();
  await page.getByRole('dialog', { name: '3D Secure 2 Test Page' }).getByRole('button', { name: 'Fail' }).click();
  const alert = page.getByRole('dialog', { name: 'Add credits' }).getByRole('alert').filter({ hasText: 'bank' });
  await expect(alert).toHaveText(
    'Your bank could not confirm this payment (3-D Secure was not completed). Nothing was charged. Try again or use another card.',
  );
  await shot(page, info, '3ds-failed');
  await expect.poll(async () => (await webhookState(stack)).pending).toBe(0);
  await expect(balance(page)).toHaveText('$20.00');
});

test('a declined card shows the friendly error and the balance does not move', async ({ page, stack }, info) => {
  await signIn(page, stack, 'qa-declined');
  await fillTopUp(page, 10, '4000 0000 0000 0002');
  await payButton(page, 10).click();
  const dialog = page.getByRole('dialog', { name: 'Add credits' });
  await expect(dialog.getByRole('alert').filter({ hasText: 'declined' })).toHaveText(
    'Your card was declined. Nothing was charged. Try another card or contact your bank.',
  );
  await shot(page, info, 'declined');
  await expect.poll(async () => (await webhookState(stack)).pending).toBe(0);
  await expect(balance(page)).toHaveText('$0.00');

  // The same dialog takes another card for the same payment.
  await dialog.getByLabel('Card number').fill('4242 4242 4242 4242');
  await payButton(page, 10).click();
  await expect(balance(page)).toHaveText('$10.00', { timeout: 3_000 });
});

test('after a reload the balance is still there', async ({ page, stack }, info) => {
  await signIn(page, stack, 'qa-reload');
  await fillTopUp(page, 50, '4242424242424242');
  await payButton(page, 50).click();
  await expect(balance(page)).toHaveText('$50.00', { timeout: 3_000 });
  await page.reload();
  await expect(page.getByText('Signed in as')).toContainText('qa-reload');
  await expect(balance(page)).toHaveText('$50.00');
  await shot(page, info, 'reloaded');
});

test('a spend made by a backend service over gRPC shows in the open page within 1 s', async ({ page, stack }, info) => {
  await signIn(page, stack, 'qa-live');
  await fillTopUp(page, 10, '4242424242424242');
  await payButton(page, 10).click();
  await expect(balance(page)).toHaveText('$10.00', { timeout: 3_000 });
  await page.getByRole('button', { name: 'Done' }).click();
  await expect(page.getByTestId('live-state')).toHaveText('Live');

  const answer = await spendCredits(stack, 'qa-live', 250, 'browser-spend-1');
  expect(answer.balance_cents).toBe('750');
  await expect(balance(page)).toHaveText('$7.50', { timeout: 1_000 });
  const ledger = page.getByRole('table', { name: 'Credits history' });
  await expect(ledger.getByRole('row').nth(1)).toContainText('Spent');
  await expect(ledger.getByRole('row').nth(1)).toContainText('−$2.50');
  await shot(page, info, 'after-spend');
});

test.describe('with TOPUP_TIERS_USD=7,15,40 on payments-grpc', () => {
  test.use({ stackEnv: { TOPUP_TIERS_USD: '7,15,40' } });

  test('the dialog offers exactly the tiers payments-grpc sells, with no other change, and one of them pays', async ({
    page,
    stack,
  }, info) => {
    await signIn(page, stack, 'qa-tiers');
    await page.getByRole('button', { name: 'Add credits' }).click();
    const dialog = page.getByRole('dialog', { name: 'Add credits' });
    await expect(dialog.locator('label.amount')).toHaveText(['$7', '$15', '$40']);
    await expect(dialog.getByLabel('$15')).toBeChecked();
    await expect(dialog.getByLabel('$15')).toBeFocused();
    await shot(page, info, 'tiers-from-config');
    await dialog.getByRole('button', { name: 'Cancel' }).click();

    await fillTopUp(page, 7, '4242 4242 4242 4242');
    await payButton(page, 7).click();
    await expect(balance(page)).toHaveText('$7.00', { timeout: 3_000 });
  });
});

test.describe('with ID tokens lasting 4 s', () => {
  test.use({ tokenLifetimeSecs: 4 });

  test('the live balance outlives the token: the stream ends when it expires and reopens with a fresh one', async ({
    page,
    stack,
  }) => {
    const streams: string[] = [];
    page.on('request', (request) => {
      if (request.url().endsWith('/balance/stream')) streams.push(request.headers()['authorization'] ?? '');
    });
    await signIn(page, stack, 'qa-expiry');
    await fillTopUp(page, 10, '4242424242424242');
    await payButton(page, 10).click();
    await expect(balance(page)).toHaveText('$10.00', { timeout: 3_000 });
    await page.getByRole('button', { name: 'Done' }).click();

    // The first stream ends with its token; the page opens another with a new one.
    await expect.poll(() => streams.length, { timeout: 15_000 }).toBeGreaterThanOrEqual(2);
    expect(new Set(streams).size).toBe(streams.length);
    await expect(page.getByTestId('live-state')).toHaveText('Live');

    await spendCredits(stack, 'qa-expiry', 100, 'after-expiry');
    await expect(balance(page)).toHaveText('$9.00', { timeout: 1_000 });
  });
});
