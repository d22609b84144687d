// The user's balance, for every component: set from a sync's answer, read
// with fetchBalance, and kept live by GET /balance/stream; while the
// stream cannot be held it is polled instead, and the stream retried.

import { useSyncExternalStore } from 'react';

import { type Balance, getBalance, streamBalance } from '../services/paymentsService';

/** Below this the sidebar asks for a top-up. */
export const NEEDS_TOP_UP_BELOW_CENTS = 500;
/** How often the balance is read while the live stream is down. */
export const POLL_INTERVAL_MS = 10_000;
/** The stream is retried after 1 s, 2 s, 4 s … up to this. */
export const MAX_RETRY_MS = 30_000;

export type LiveState = 'off' | 'connecting' | 'live' | 'polling';

export interface BalanceState {
  balanceCents: number | null;
  currency: string;
  /** When the balance last changed (RFC 3339), if known. */
  updatedAt: string | null;
  loading: boolean;
  error: string | null;
  live: LiveState;
}

const initial: BalanceState = {
  balanceCents: null,
  currency: 'usd',
  updatedAt: null,
  loading: false,
  error: null,
  live: 'off',
};

let state: BalanceState = initial;
const listeners = new Set<() => void>();

function update(change: Partial<BalanceState>): void {
  state = { ...state, ...change };
  for (const listener of listeners) listener();
}

export function getState(): BalanceState {
  return state;
}

export function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/**
 * Takes a balance read from the service. One older than the balance held
 * (an `updated_at` before it) is a late answer and is dropped, so a slow
 * read never hides a newer push.
 */
export function setBalance(balanceCents: number, updatedAt: string | null = null, currency = state.currency): void {
  if (updatedAt && state.updatedAt && Date.parse(updatedAt) < Date.parse(state.updatedAt)) return;
  update({ balanceCents, currency, updatedAt: updatedAt ?? state.updatedAt, error: null });
}

function take(balance: Balance): void {
  setBalance(balance.balance_cents, balance.updated_at ?? null, balance.currency);
}

export async function fetchBalance(): Promise<void> {
  update({ loading: true });
  try {
    take(await getBalance());
    update({ loading: false });
  } catch (error) {
    update({ loading: false, error: error instanceof Error ? error.message : String(error) });
  }
}

export function needsTopUp(current: BalanceState = state): boolean {
  return current.balanceCents !== null && current.balanceCents < NEEDS_TOP_UP_BELOW_CENTS;
}

export interface LiveOptions {
  stream?: typeof streamBalance;
  fetch?: typeof fetchBalance;
}

/**
 * Keeps the balance live until the returned function is called: the
 * stream, reopened at once when it ends (a fresh token) and after a
 * growing pause when it fails, with polling while it is down.
 */
export function startLiveBalance(options: LiveOptions = {}): () => void {
  const stream = options.stream ?? streamBalance;
  const poll = options.fetch ?? fetchBalance;
  const stop = new AbortController();
  let pollTimer: ReturnType<typeof setInterval> | null = null;

  const startPolling = () => {
    if (pollTimer !== null) return;
    update({ live: 'polling' });
    pollTimer = setInterval(() => void poll(), POLL_INTERVAL_MS);
  };
  const stopPolling = () => {
    if (pollTimer !== null) clearInterval(pollTimer);
    pollTimer = null;
  };
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      stop.signal.addEventListener('abort', () => {
        clearTimeout(timer);
        resolve();
      });
    });

  void (async () => {
    let retryMs = 1000;
    update({ live: 'connecting' });
    while (!stop.signal.aborted) {
      let heard = false;
      try {
        await stream((balance) => {
          heard = true;
          stopPolling();
          retryMs = 1000;
          update({ live: 'live' });
          take(balance);
        }, stop.signal);
        // Ended after it spoke (the token expired): reopen at once with a
        // fresh token. Ended before a word: pause as after a failure.
        if (!heard && !stop.signal.aborted) {
          await pause(retryMs);
          retryMs = Math.min(retryMs * 2, MAX_RETRY_MS);
        }
      } catch {
        if (stop.signal.aborted) break;
        startPolling();
        await pause(retryMs);
        retryMs = Math.min(retryMs * 2, MAX_RETRY_MS);
      }
    }
  })();

  return () => {
    stop.abort();
    stopPolling();
    update({ live: 'off' });
  };
}

/** For tests: back to nothing known. */
export function resetBalanceStore(): void {
  state = initial;
  for (const listener of listeners) listener();
}

/** The store's state in a component, re-rendered on every change. */
export function useBalanceStore(): BalanceState {
  return useSyncExternalStore(subscribe, getState, getState);
}
