import type { Stripe } from '@stripe/stripe-js';
import { act, render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it, vi } from 'vitest';

import { ApiError } from '../../services/api';
import { createPaymentIntent, getClientConfig, syncPaymentIntent } from '../../services/paymentsService';
import { getState, resetBalanceStore } from '../../store/balanceStore';
import { TopUpDialog } from './TopUpDialog';

vi.mock('../../services/paymentsService', async (original) => ({
  ...(await original<typeof import('../../services/paymentsService')>()),
  createPaymentIntent: vi.fn(),
  getClientConfig: vi.fn(),
  syncPaymentIntent: vi.fn(),
}));

const intent = {
  intent_id: 'pi_1',
  client_secret: 'pi_1_secret_x',
  amount: 1000,
  currency: 'usd',
  status: 'requires_payment_method' as const,
};

/** Just enough of Stripe.js for react-stripe-js: one mountable element. */
function fakeStripe(confirmPayment: ReturnType<typeof vi.fn>): Promise<Stripe | null> {
  const element = {
    mount: vi.fn(),
    destroy: vi.fn(),
    update: vi.fn(),
    on: vi.fn((event: string, callback: () => void) => {
      if (event === 'ready') setTimeout(callback, 0);
    }),
    off: vi.fn(),
  };
  const stripe = {
    elements: vi.fn(() => ({ create: vi.fn(() => element), update: vi.fn(), getElement: vi.fn(() => element) })),
    confirmPayment,
    createToken: vi.fn(),
    createPaymentMethod: vi.fn(),
    confirmCardPayment: vi.fn(),
  };
  return Promise.resolve(stripe as unknown as Stripe);
}

async function openAndContinue(confirmPayment: ReturnType<typeof vi.fn>, onClose = vi.fn()) {
  const user = userEvent.setup();
  render(<TopUpDialog open onClose={onClose} stripe={fakeStripe(confirmPayment)} />);
  await user.click(await screen.findByLabelText('$10'));
  await user.click(screen.getByRole('button', { name: 'Continue to payment' }));
  const pay = await screen.findByRole('button', { name: 'Pay $10.00' });
  await vi.waitFor(() => expect(pay).toBeEnabled());
  return { user, pay, onClose };
}

beforeEach(() => {
  resetBalanceStore();
  vi.mocked(createPaymentIntent).mockReset().mockResolvedValue(intent);
  vi.mocked(syncPaymentIntent).mockReset();
  vi.mocked(getClientConfig).mockReset().mockResolvedValue({ tiers_usd: [5, 10, 20, 50], currency: 'usd' });
});

describe('TopUpDialog', () => {
  it('offers the tiers on sale, focuses the chosen one, and creates the intent with one key per attempt', async () => {
    const user = userEvent.setup();
    render(<TopUpDialog open onClose={vi.fn()} stripe={fakeStripe(vi.fn())} />);
    const dialog = screen.getByRole('dialog', { name: 'Add credits' });
    expect(dialog).toHaveAttribute('aria-modal', 'true');
    expect(screen.getByRole('button', { name: 'Continue to payment' })).toBeDisabled();
    await screen.findByLabelText('$10');
    expect(screen.getAllByRole('radio').map((radio) => radio.closest('label')?.textContent)).toEqual([
      '$5',
      '$10',
      '$20',
      '$50',
    ]);
    expect(screen.getByLabelText('$10')).toBeChecked();
    expect(screen.getByLabelText('$10')).toHaveFocus();

    vi.mocked(createPaymentIntent).mockRejectedValueOnce(new ApiError(503, null, null));
    await user.click(screen.getByLabelText('$20'));
    await user.click(screen.getByRole('button', { name: 'Continue to payment' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('Payments are briefly unavailable');
    await user.click(screen.getByRole('button', { name: 'Continue to payment' }));
    const [first, second] = vi.mocked(createPaymentIntent).mock.calls;
    expect(first?.[0]).toBe(20);
    expect(second?.[1]).toBe(first?.[1]);
  });

  it('shows whatever tiers the service sells, and no other', async () => {
    vi.mocked(getClientConfig).mockResolvedValue({ tiers_usd: [7, 15], currency: 'usd' });
    const user = userEvent.setup();
    render(<TopUpDialog open onClose={vi.fn()} stripe={fakeStripe(vi.fn())} />);
    await screen.findByLabelText('$15');
    expect(screen.getAllByRole('radio').map((radio) => radio.closest('label')?.textContent)).toEqual(['$7', '$15']);
    expect(screen.getByText('$15.00 buys 1500 credits.')).toBeInTheDocument();
    await user.click(screen.getByLabelText('$7'));
    await user.click(screen.getByRole('button', { name: 'Continue to payment' }));
    expect(vi.mocked(createPaymentIntent).mock.calls[0]?.[0]).toBe(7);
  });

  it('says so when the tiers cannot be loaded, and tries again', async () => {
    vi.mocked(getClientConfig).mockRejectedValueOnce(new ApiError(503, null, null));
    const user = userEvent.setup();
    render(<TopUpDialog open onClose={vi.fn()} stripe={fakeStripe(vi.fn())} />);
    expect(await screen.findByRole('alert')).toHaveTextContent('Payments are briefly unavailable');
    expect(screen.queryAllByRole('radio')).toEqual([]);
    expect(screen.getByRole('button', { name: 'Continue to payment' })).toBeDisabled();
    await user.click(screen.getByRole('button', { name: 'Try again' }));
    expect(await screen.findByLabelText('$10')).toBeChecked();
    expect(screen.queryByRole('alert')).toBeNull();
    expect(getClientConfig).toHaveBeenCalledTimes(2);
  });

  it('says when to come back after too many attempts', async () => {
    vi.mocked(createPaymentIntent).mockRejectedValueOnce(new ApiError(429, null, 42));
    const user = userEvent.setup();
    render(<TopUpDialog open onClose={vi.fn()} stripe={fakeStripe(vi.fn())} />);
    await screen.findByLabelText('$10');
    await user.click(screen.getByRole('button', { name: 'Continue to payment' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('Please try again in 42 seconds.');
  });

  it('confirms with redirect if_required, syncs, and shows the new balance', async () => {
    const confirm = vi.fn().mockResolvedValue({ paymentIntent: { id: 'pi_1', status: 'succeeded' } });
    vi.mocked(syncPaymentIntent).mockResolvedValue({
      intent_id: 'pi_1',
      status: 'succeeded',
      amount_cents: 1000,
      amount_received_cents: 1000,
      amount_refunded_cents: 0,
      balance_cents: 1250,
    });
    const { user, pay } = await openAndContinue(confirm);
    await user.click(pay);
    expect(await screen.findByRole('status')).toHaveTextContent(
      'Payment received: $10.00 added. Your balance is $12.50.',
    );
    expect(confirm).toHaveBeenCalledWith(expect.objectContaining({ redirect: 'if_required' }));
    expect(syncPaymentIntent).toHaveBeenCalledWith('pi_1');
    expect(getState().balanceCents).toBe(1250);
  });

  it('shows a friendly error for a declined card and stays on the card form', async () => {
    const confirm = vi.fn().mockResolvedValue({
      error: { type: 'card_error', code: 'card_declined', decline_code: 'generic_decline', message: 'Your card was declined.' },
    });
    const { user, pay } = await openAndContinue(confirm);
    await user.click(pay);
    expect(await screen.findByRole('alert')).toHaveTextContent(
      'Your card was declined. Nothing was charged. Try another card or contact your bank.',
    );
    expect(syncPaymentIntent).not.toHaveBeenCalled();
    expect(screen.getByRole('button', { name: 'Pay $10.00' })).toBeEnabled();
    expect(getState().balanceCents).toBeNull();
  });

  it('still reports the payment when the sync cannot be reached', async () => {
    const confirm = vi.fn().mockResolvedValue({ paymentIntent: { id: 'pi_1', status: 'succeeded' } });
    vi.mocked(syncPaymentIntent).mockRejectedValue(new Error('offline'));
    const { user, pay } = await openAndContinue(confirm);
    await user.click(pay);
    expect(await screen.findByRole('status')).toHaveTextContent(
      'Payment received: $10.00 will be added to your balance in a moment.',
    );
  });

  it('closes on Escape, but not while paying', async () => {
    let finish: (value: unknown) => void = () => {};
    const confirm = vi.fn(() => new Promise((resolve) => (finish = resolve)));
    const { user, pay, onClose } = await openAndContinue(confirm);
    await user.click(pay);
    expect(screen.getByRole('button', { name: 'Paying…' })).toBeDisabled();
    await user.keyboard('{Escape}');
    expect(onClose).not.toHaveBeenCalled();
    await act(async () => finish({ error: { type: 'card_error', code: 'card_declined' } }));
    await user.keyboard('{Escape}');
    expect(onClose).toHaveBeenCalledTimes(1);
  });

  it('keeps Tab inside the dialog', async () => {
    const user = userEvent.setup();
    render(
      <>
        <button type="button">outside</button>
        <TopUpDialog open onClose={vi.fn()} stripe={fakeStripe(vi.fn())} />
      </>,
    );
    const dialog = screen.getByRole('dialog');
    await screen.findByLabelText('$10');
    for (let i = 0; i < 8; i++) {
      await user.tab();
      expect(dialog).toContainElement(document.activeElement as HTMLElement);
    }
  });
});
