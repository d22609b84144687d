// The balance, always in sight, and the way to add credits: the button is
// emphasized when the balance runs low.

import { formatCents } from '../../money';
import { type LiveState, needsTopUp, useBalanceStore } from '../../store/balanceStore';

const LIVE_LABELS: Record<LiveState, string> = {
  off: '',
  connecting: 'Connecting…',
  live: 'Live',
  polling: 'Reconnecting; checking every few seconds',
};

export interface SidebarProps {
  uid: string;
  onAddCredits: () => void;
  onSignOut: () => void;
}

export function Sidebar({ uid, onAddCredits, onSignOut }: SidebarProps) {
  const balance = useBalanceStore();
  const low = needsTopUp(balance);
  return (
    <aside className="sidebar" aria-label="Account">
      <p className="user">
        Signed in as <strong>{uid}</strong>
      </p>
      <section aria-labelledby="balance-heading" className="balance">
        <h2 id="balance-heading">Credits</h2>
        <p className="balance-amount" data-testid="balance" aria-live="polite">
          {balance.balanceCents === null ? '…' : formatCents(balance.balanceCents, balance.currency)}
        </p>
        {balance.error && balance.balanceCents === null && (
          <p className="error" role="alert">
            Your balance could not be loaded.
          </p>
        )}
        <p className={`live live-${balance.live}`} data-testid="live-state">
          {LIVE_LABELS[balance.live]}
        </p>
      </section>
      {low && <p className="low">Your credits are running low.</p>}
      <button type="button" className={low ? 'add-credits emphasized' : 'add-credits'} onClick={onAddCredits}>
        Add credits
      </button>
      <button type="button" className="link" onClick={onSignOut}>
        Sign out
      </button>
    </aside>
  );
}
