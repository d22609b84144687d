import type { Stripe } from '@stripe/stripe-js';
import { useEffect, useState } from 'react';

import { History } from './components/History';
import { SignIn } from './components/SignIn';
import { Sidebar } from './components/ui/Sidebar';
import { TopUpDialog } from './components/ui/TopUpDialog';
import { loadConfig } from './config';
import { type AuthProvider, type SignedInUser, auth } from './services/auth';
import { getStripe } from './services/stripe';
import { fetchBalance, resetBalanceStore, startLiveBalance } from './store/balanceStore';

interface Ready {
  provider: AuthProvider;
  stripe: Promise<Stripe | null>;
}

export function App() {
  const [ready, setReady] = useState<Ready | null>(null);
  const [failed, setFailed] = useState<string | null>(null);
  const [user, setUser] = useState<SignedInUser | null>(null);
  const [topUpOpen, setTopUpOpen] = useState(false);

  useEffect(() => {
    void (async () => {
      try {
        const [config, provider] = await Promise.all([loadConfig(), auth()]);
        setReady({ provider, stripe: getStripe(config) });
        setUser(provider.currentUser());
      } catch (error) {
        setFailed(error instanceof Error ? error.message : String(error));
      }
    })();
  }, []);

  useEffect(() => {
    if (!user) return;
    void fetchBalance();
    return startLiveBalance();
  }, [user]);

  if (failed) {
    return (
      <main className="sign-in">
        <p role="alert">The page could not start: {failed}</p>
      </main>
    );
  }
  if (!ready) return <main className="sign-in">Loading…</main>;
  if (!user) {
    return (
      <SignIn
        onSignIn={async (uid) => {
          setUser(await ready.provider.signIn(uid));
        }}
      />
    );
  }

  return (
    <div className="layout">
      <Sidebar
        uid={user.uid}
        onAddCredits={() => setTopUpOpen(true)}
        onSignOut={() => {
          void ready.provider.signOut().then(() => {
            resetBalanceStore();
            setUser(null);
          });
        }}
      />
      <main className="content">
        <h1>Your credits</h1>
        <History />
      </main>
      <TopUpDialog open={topUpOpen} onClose={() => setTopUpOpen(false)} stripe={ready.stripe} />
    </div>
  );
}
