// "Add credits": choose an amount, pay with Stripe Elements, and see the
// balance grow. Right after stripe.confirmPayment succeeds the dialog asks
// the service to sync the payment, which credits it at once and answers
// the new balance; the live stream carries any later change.

import { Elements, PaymentElement, useElements, useStripe } from '@stripe/react-stripe-js';
import type { Stripe } from '@stripe/stripe-js';
import { type FormEvent, type KeyboardEvent, useCallback, useEffect, useId, useRef, useState } from 'react';

import { formatCents } from '../../money';
import {
  type CreatedIntent,
  createPaymentIntent,
  getClientConfig,
  syncPaymentIntent,
} from '../../services/paymentsService';
import { setBalance } from '../../store/balanceStore';
import { friendlyApiError, friendlyStripeError } from './paymentErrors';

/** The tiers on sale, as `GET /config` answers them. */
type Tiers = { kind: 'loading' } | { kind: 'failed'; message: string } | { kind: 'ready'; usd: number[] };

type Step =
  | { kind: 'choose' }
  | { kind: 'pay'; intent: CreatedIntent }
  | { kind: 'done'; addedCents: number; balanceCents: number | null; pending: boolean };

export interface TopUpDialogProps {
  open: boolean;
  onClose: () => void;
  stripe: Promise<Stripe | null>;
}

const FOCUSABLE = 'button:not([disabled]), input:not([disabled]), [href], [tabindex]:not([tabindex="-1"])';

export function TopUpDialog({ open, ...props }: TopUpDialogProps) {
  // Each opening starts afresh: a new amount choice and a new attempt key.
  return open ? <DialogBody {...props} /> : null;
}

function DialogBody({ onClose, stripe }: Omit<TopUpDialogProps, 'open'>) {
  const titleId = useId();
  const dialogRef = useRef<HTMLDivElement>(null);
  const [tiers, setTiers] = useState<Tiers>({ kind: 'loading' });
  const [amountUsd, setAmountUsd] = useState<number | null>(null);
  const [step, setStep] = useState<Step>({ kind: 'choose' });
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  // One key per attempt: a retried create answers the same intent.
  const [attempt] = useState(() => crypto.randomUUID());

  const fetchTiers = useCallback(() => {
    getClientConfig().then(
      (config) => {
        setTiers({ kind: 'ready', usd: config.tiers_usd });
        // The second tier when there is one: a small first step, not the smallest.
        setAmountUsd((chosen) => chosen ?? config.tiers_usd[Math.min(1, config.tiers_usd.length - 1)] ?? null);
      },
      (failure: unknown) => setTiers({ kind: 'failed', message: friendlyApiError(failure) }),
    );
  }, []);
  useEffect(() => fetchTiers(), [fetchTiers]);
  const retryTiers = () => {
    setTiers({ kind: 'loading' });
    fetchTiers();
  };

  // Focus moves into the dialog, and back where it was when it closes.
  const firstFocus = useRef<HTMLElement | null>(null);
  useEffect(() => {
    const before = document.activeElement as HTMLElement | null;
    firstFocus.current = dialogRef.current?.querySelector<HTMLElement>(FOCUSABLE) ?? null;
    firstFocus.current?.focus();
    return () => before?.focus();
  }, []);
  // Once the amounts arrive, the chosen one takes the focus, unless the
  // user has moved it meanwhile.
  useEffect(() => {
    if (tiers.kind !== 'ready' || document.activeElement !== firstFocus.current) return;
    dialogRef.current?.querySelector<HTMLElement>('input[name="amount"]:checked')?.focus();
  }, [tiers.kind]);

  const close = () => {
    if (!busy) onClose();
  };

  const onKeyDown = (event: KeyboardEvent<HTMLDivElement>) => {
    if (event.key === 'Escape') {
      event.stopPropagation();
      close();
      return;
    }
    if (event.key !== 'Tab' || !dialogRef.current) return;
    // Focus stays in the dialog.
    const focusable = [...dialogRef.current.querySelectorAll<HTMLElement>(FOCUSABLE)];
    const first = focusable[0];
    const last = focusable[focusable.length - 1];
    if (!first || !last) return;
    if (event.shiftKey && document.activeElement === first) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && document.activeElement === last) {
      event.preventDefault();
      first.focus();
    }
  };

  const start = async () => {
    if (amountUsd === null) return;
    setBusy(true);
    setError(null);
    try {
      const intent = await createPaymentIntent(amountUsd, `topup-${attempt}-${amountUsd}`);
      setStep({ kind: 'pay', intent });
    } catch (failure) {
      setError(friendlyApiError(failure));
    } finally {
      setBusy(false);
    }
  };

  const paid = async (intentId: string, amountCents: number) => {
    try {
      const synced = await syncPaymentIntent(intentId);
      const credited = synced.status === 'succeeded';
      if (credited) setBalance(synced.balance_cents);
      setStep({ kind: 'done', addedCents: amountCents, balanceCents: synced.balance_cents, pending: !credited });
    } catch {
      // Paid at Stripe: the webhook credits it and the live balance shows it.
      setStep({ kind: 'done', addedCents: amountCents, balanceCents: null, pending: true });
    }
  };

  return (
    <div className="dialog-backdrop" onMouseDown={(e) => e.target === e.currentTarget && close()}>
      <div
        ref={dialogRef}
        className="dialog"
        role="dialog"
        aria-modal="true"
        aria-labelledby={titleId}
        aria-busy={busy}
        onKeyDown={onKeyDown}
      >
        <h2 id={titleId}>Add credits</h2>

        {step.kind === 'choose' && (
          <form
            onSubmit={(event: FormEvent) => {
              event.preventDefault();
              void start();
            }}
          >
            <fieldset className="amounts" aria-busy={tiers.kind === 'loading'}>
              <legend>Amount</legend>
              {tiers.kind === 'loading' && <p className="hint">Loading the amounts on sale…</p>}
              {tiers.kind === 'failed' && (
                <p className="error" role="alert">
                  {tiers.message}{' '}
                  <button type="button" onClick={retryTiers}>
                    Try again
                  </button>
                </p>
              )}
              {tiers.kind === 'ready' &&
                tiers.usd.map((usd) => (
                  <label key={usd} className={usd === amountUsd ? 'amount selected' : 'amount'}>
                    <input
                      type="radio"
                      name="amount"
                      value={usd}
                      checked={usd === amountUsd}
                      onChange={() => setAmountUsd(usd)}
                    />
                    ${usd}
                  </label>
                ))}
            </fieldset>
            {amountUsd !== null && (
              <p className="hint">
                {formatCents(amountUsd * 100)} buys {amountUsd * 100} credits.
              </p>
            )}
            {error && (
              <p className="error" role="alert">
                {error}
              </p>
            )}
            <div className="actions">
              <button type="button" onClick={close} disabled={busy}>
                Cancel
              </button>
              <button type="submit" className="primary" disabled={busy || amountUsd === null}>
                {busy ? 'Preparing…' : 'Continue to payment'}
              </button>
            </div>
          </form>
        )}

        {step.kind === 'pay' && (
          <Elements stripe={stripe} options={{ clientSecret: step.intent.client_secret }}>
            <PaymentForm
              intent={step.intent}
              busy={busy}
              setBusy={setBusy}
              onPaid={paid}
              onCancel={close}
            />
          </Elements>
        )}

        {step.kind === 'done' && (
          <div className="done">
            <p role="status">
              {step.pending
                ? `Payment received: ${formatCents(step.addedCents)} will be added to your balance in a moment.`
                : `Payment received: ${formatCents(step.addedCents)} added.`}
              {step.balanceCents !== null && !step.pending && ` Your balance is ${formatCents(step.balanceCents)}.`}
            </p>
            <div className="actions">
              <button type="button" className="primary" onClick={onClose}>
                Done
              </button>
            </div>
          </div>
        )}
      </div>
    </div>
  );
}

interface PaymentFormProps {
  intent: CreatedIntent;
  busy: boolean;
  setBusy: (busy: boolean) => void;
  onPaid: (intentId: string, amountCents: number) => Promise<void>;
  onCancel: () => void;
}

function PaymentForm({ intent, busy, setBusy, onPaid, onCancel }: PaymentFormProps) {
  const stripe = useStripe();
  const elements = useElements();
  const [ready, setReady] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const pay = async (event: FormEvent) => {
    event.preventDefault();
    if (!stripe || !elements || busy) return;
    setBusy(true);
    setError(null);
    try {
      const { error: failure, paymentIntent } = await stripe.confirmPayment({
        elements,
        redirect: 'if_required',
        confirmParams: { return_url: window.location.href },
      });
      if (failure) {
        setError(friendlyStripeError(failure));
        return;
      }
      if (paymentIntent && (paymentIntent.status === 'succeeded' || paymentIntent.status === 'processing')) {
        await onPaid(paymentIntent.id, intent.amount);
      } else {
        setError(friendlyStripeError({}));
      }
    } catch {
      setError(friendlyStripeError({}));
    } finally {
      setBusy(false);
    }
  };

  return (
    <form onSubmit={(event) => void pay(event)}>
      <PaymentElement onReady={() => setReady(true)} />
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <div className="actions">
        <button type="button" onClick={onCancel} disabled={busy}>
          Cancel
        </button>
        <button type="submit" className="primary" disabled={!stripe || !ready || busy}>
          {busy ? 'Paying…' : `Pay ${formatCents(intent.amount)}`}
        </button>
      </div>
    </form>
  );
}
