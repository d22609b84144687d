// Production sign-in: Firebase Auth (Google), whose getIdToken() hands out
// the user's ID token and refreshes it before it expires. Loaded only by a
// production build.

import { initializeApp } from 'firebase/app';
import {
  GoogleAuthProvider,
  getAuth,
  onAuthStateChanged,
  signInWithPopup,
  signOut,
  type Auth,
} from 'firebase/auth';

import type { AuthProvider, SignedInUser } from './authProvider';

export class FirebaseAuth implements AuthProvider {
  private constructor(private readonly firebase: Auth) {}

  /** Resolves once Firebase knows whether a user is signed in. */
  static async start(): Promise<FirebaseAuth> {
    const app = initializeApp({
      apiKey: import.meta.env.VITE_FIREBASE_API_KEY,
      authDomain: import.meta.env.VITE_FIREBASE_AUTH_DOMAIN,
      projectId: import.meta.env.VITE_FIREBASE_PROJECT_ID,
    });
    const firebase = getAuth(app);
    await new Promise<void>((resolve) => {
      const stop = onAuthStateChanged(firebase, () => {
        stop();
        resolve();
      });
    });
    return new FirebaseAuth(firebase);
  }

  currentUser(): SignedInUser | null {
    const user = this.firebase.currentUser;
    return user ? { uid: user.uid } : null;
  }

  async getIdToken(): Promise<string> {
    const user = this.firebase.currentUser;
    if (!user) throw new Error('not signed in');
    return user.getIdToken();
  }

  async signIn(): Promise<SignedInUser> {
    const { user } = await signInWithPopup(this.firebase, new GoogleAuthProvider());
    return { uid: user.uid };
  }

  async signOut(): Promise<void> {
    await signOut(this.firebase);
  }
}
