// Signing in. A sandbox build asks for any user id and signs it with the
// demo's dev key; a production build signs in with Google through
// Firebase Auth.

import { type FormEvent, useId, useState } from 'react';

import { SANDBOX } from '../config';

export function SignIn({ onSignIn }: { onSignIn: (uid?: string) => Promise<void> }) {
  const inputId = useId();
  const [uid, setUid] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await onSignIn(SANDBOX ? uid.trim() : undefined);
    } catch {
      setError(SANDBOX ? 'Use 1 to 128 letters, digits or - _ . @' : 'Signing in did not work. Please try again.');
    } finally {
      setBusy(false);
    }
  };

  return (
    <main className="sign-in">
      <h1>Credits</h1>
      <form onSubmit={(event) => void submit(event)}>
        {SANDBOX ? (
          <>
            <p>Development sign-in: any user id, signed with the demo&apos;s dev key.</p>
            <label htmlFor={inputId}>User id</label>
            <input
              id={inputId}
              value={uid}
              onChange={(event) => setUid(event.target.value)}
              autoComplete="username"
              required
              maxLength={128}
            />
            <button type="submit" className="primary" disabled={busy}>
              Sign in
            </button>
          </>
        ) : (
          <button type="submit" className="primary" disabled={busy}>
            Sign in with Google
          </button>
        )}
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
      </form>
    </main>
  );
}
