import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import type { Balance } from '../services/paymentsService';
import {
  MAX_RETRY_MS,
  NEEDS_TOP_UP_BELOW_CENTS,
  POLL_INTERVAL_MS,
  getState,
  needsTopUp,
  resetBalanceStore,
  setBalance,
  startLiveBalance,
} from './balanceStore';

const balance = (cents: number, updatedAt: string): Balance => ({
  balance_cents: cents,
  currency: 'usd',
  updated_at: updatedAt,
});

beforeEach(() => resetBalanceStore());
afterEach(() => vi.useRealTimers());

describe('setBalance', () => {
  it('drops a balance older than the one held', () => {
    setBalance(1000, '2026-12-04T10:00:02Z');
    setBalance(500, '2026-12-04T10:00:01Z');
    expect(getState().balanceCents).toBe(1000);
    setBalance(750, '2026-12-04T10:00:03Z');
    expect(getState().balanceCents).toBe(750);
    // A sync's answer has no timestamp: taken as it comes.
    setBalance(1750);
    expect(getState()).toMatchObject({ balanceCents: 1750, updatedAt: '2026-12-04T10:00:03Z' });
  });
});

describe('needsTopUp', () => {
  it('asks for a top-up below the threshold, not before the balance is known', () => {
    expect(needsTopUp()).toBe(false);
    setBalance(NEEDS_TOP_UP_BELOW_CENTS - 1);
    expect(needsTopUp()).toBe(true);
    setBalance(NEEDS_TOP_UP_BELOW_CENTS);
    expect(needsTopUp()).toBe(false);
    setBalance(-300);
    expect(needsTopUp()).toBe(true);
  });
});

describe('startLiveBalance', () => {
  it('takes every pushed balance and reopens the stream when it ends', async () => {
    const pushes = [
      [balance(100, '2026-12-04T10:00:00Z'), balance(200, '2026-12-04T10:00:01Z')],
      [balance(300, '2026-12-04T10:00:02Z')],
    ];
    let opened = 0;
    let release: () => void = () => {};
    const parked = new Promise<void>((resolve) => (release = resolve));
    const stream = vi.fn(async (onBalance: (b: Balance) => void, signal: AbortSignal) => {
      const batch = pushes[opened++];
      if (!batch) {
        release();
        await new Promise((resolve) => signal.addEventListener('abort', resolve));
        return;
      }
      batch.forEach(onBalance);
    });
    const poll = vi.fn(async () => {});
    const stop = startLiveBalance({ stream, fetch: poll });
    await parked;
    expect(getState()).toMatchObject({ balanceCents: 300, live: 'live' });
    expect(stream).toHaveBeenCalledTimes(3);
    expect(poll).not.toHaveBeenCalled();
    stop();
    expect(getState().live).toBe('off');
  });

  it('polls while the stream fails, retries it with growing pauses, and stops polling once it is back', async () => {
    vi.useFakeTimers();
    let failures = 3;
    const opened: number[] = [];
    const stream = vi.fn(async (onBalance: (b: Balance) => void, signal: AbortSignal) => {
      opened.push(Date.now());
      if (failures-- > 0) throw new Error('503');
      onBalance(balance(900, '2026-12-04T10:00:00Z'));
      await new Promise((resolve) => signal.addEventListener('abort', resolve));
    });
    const poll = vi.fn(async () => {});
    const stop = startLiveBalance({ stream, fetch: poll });
    await vi.advanceTimersByTimeAsync(0);
    expect(getState().live).toBe('polling');

    await vi.advanceTimersByTimeAsync(1000 + 2000 + 4000);
    expect(stream).toHaveBeenCalledTimes(4);
    expect(opened.slice(1).map((at, i) => at - opened[i]!)).toEqual([1000, 2000, 4000]);
    expect(getState()).toMatchObject({ live: 'live', balanceCents: 900 });

    const polledWhileDown = poll.mock.calls.length;
    await vi.advanceTimersByTimeAsync(POLL_INTERVAL_MS * 3);
    expect(poll).toHaveBeenCalledTimes(polledWhileDown);
    stop();
  });

  it('never waits longer than the longest pause between attempts', async () => {
    vi.useFakeTimers();
    const opened: number[] = [];
    const stream = vi.fn(async () => {
      opened.push(Date.now());
      throw new Error('down');
    });
    const stop = startLiveBalance({ stream, fetch: vi.fn(async () => {}) });
    await vi.advanceTimersByTimeAsync(MAX_RETRY_MS * 4);
    const pauses = opened.slice(1).map((at, i) => at - opened[i]!);
    expect(Math.max(...pauses)).toBe(MAX_RETRY_MS);
    stop();
  });
});
