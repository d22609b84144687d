// Who the user is, as an ID token for the edge. A sandbox build signs in
// through the demo's dev key (POST /dev/sign-in: a Firebase-shaped token for
// the user id typed in, never offered in production); a production build
// signs in with Firebase Auth and asks it for the ID token, which Firebase
// refreshes before it expires.

import { SANDBOX } from '../config';
import type { AuthProvider, SignedInUser } from './authProvider';

export type { AuthProvider, SignedInUser };

const DEV_UID_KEY = 'credits.dev.uid';
/** A token closer than this to its end is replaced before use. */
const REFRESH_MARGIN_SECS = 60;

/** The sandbox's sign-in: the uid is remembered, so a reload stays signed in. */
export class DevAuth implements AuthProvider {
  private token: { value: string; expiresAt: number } | null = null;
  private uid: string | null;

  constructor(private readonly storage: Storage = window.localStorage) {
    this.uid = storage.getItem(DEV_UID_KEY);
  }

  currentUser(): SignedInUser | null {
    return this.uid ? { uid: this.uid } : null;
  }

  async signIn(uid?: string): Promise<SignedInUser> {
    if (!uid) throw new Error('a user id is needed');
    this.uid = uid;
    this.token = null;
    await this.getIdToken();
    this.storage.setItem(DEV_UID_KEY, uid);
    return { uid };
  }

  async signOut(): Promise<void> {
    this.uid = null;
    this.token = null;
    this.storage.removeItem(DEV_UID_KEY);
  }

  async getIdToken(): Promise<string> {
    const uid = this.uid;
    if (!uid) throw new Error('not signed in');
    const now = Date.now() / 1000;
    if (this.token && this.token.expiresAt - REFRESH_MARGIN_SECS > now) return this.token.value;
    const response = await fetch('/dev/sign-in', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ uid }),
    });
    if (!response.ok) throw new Error(`dev sign-in answered ${response.status}`);
    const body = (await response.json()) as { id_token: string; expires_at: number };
    this.token = { value: body.id_token, expiresAt: body.expires_at };
    return body.id_token;
  }
}

let provider: AuthProvider | null = null;

/** The page's sign-in, made once. */
export async function auth(): Promise<AuthProvider> {
  if (provider) return provider;
  if (SANDBOX) {
    provider = new DevAuth();
  } else {
    const { FirebaseAuth } = await import('./firebaseAuth');
    provider = await FirebaseAuth.start();
  }
  return provider;
}

/** For tests: a provider of their own. */
export function setAuthProvider(next: AuthProvider | null): void {
  provider = next;
}
