// What the page needs of a sign-in, whichever signs the user in: the
// sandbox's dev sign-in (auth.ts) or Firebase Auth (firebaseAuth.ts).

export interface SignedInUser {
  uid: string;
}

export interface AuthProvider {
  /** The user signed in now, or null. */
  currentUser(): SignedInUser | null;
  /** An ID token valid for at least a minute more. */
  getIdToken(): Promise<string>;
  signIn(uid?: string): Promise<SignedInUser>;
  signOut(): Promise<void>;
}
