// What the user reads when a top-up fails: plain words and what to do next,
// never a stack trace or a raw code. Stripe's own messages for the card
// form's checks are already written for people and are kept.

import { ApiError, NetworkError } from '../../services/api';

export interface StripeLikeError {
  type?: string;
  code?: string;
  decline_code?: string;
  message?: string;
}

const DECLINES: Record<string, string> = {
  insufficient_funds: 'Your card has insufficient funds. Try another card.',
  lost_card: 'Your card was declined. Try another card or contact your bank.',
  stolen_card: 'Your card was declined. Try another card or contact your bank.',
  expired_card: 'Your card has expired. Try another card.',
  incorrect_cvc: "Your card's security code is incorrect. Check it and try again.",
  processing_error: 'We could not process your card just now. Please try again in a moment.',
};

/** The message for a failed `stripe.confirmPayment`. */
export function friendlyStripeError(error: StripeLikeError): string {
  if (error.type === 'validation_error' && error.message) return error.message;
  const code = error.decline_code ?? error.code ?? '';
  if (DECLINES[code]) return DECLINES[code];
  switch (error.code) {
    case 'card_declined':
      return 'Your card was declined. Nothing was charged. Try another card or contact your bank.';
    case 'payment_intent_authentication_failure':
      return 'Your bank could not confirm this payment (3-D Secure was not completed). Nothing was charged. Try again or use another card.';
    case 'incorrect_number':
    case 'invalid_number':
      return 'Your card number is incorrect. Check it and try again.';
    default:
      break;
  }
  if (error.type === 'api_connection_error') {
    return 'We could not reach the payment provider. Check your connection and try again.';
  }
  return 'The payment did not go through. Nothing was charged. Please try again.';
}

/** The message for a failed call to our own service. */
export function friendlyApiError(error: unknown): string {
  if (error instanceof NetworkError) {
    return 'We could not reach the payments service. Check your connection and try again.';
  }
  if (error instanceof ApiError) {
    if (error.status === 429) {
      const wait = error.retryAfter ? ` in ${error.retryAfter} seconds` : ' in a minute';
      return `Too many attempts in a short time. Please try again${wait}.`;
    }
    if (error.status === 401) return 'Your session has expired. Please sign in again.';
    if (error.kind === 'invalid-amount') return 'That amount cannot be bought. Choose one of the amounts shown.';
    if (error.status === 503) return 'Payments are briefly unavailable. Nothing was charged; please try again in a moment.';
  }
  return 'Something went wrong on our side. Nothing was charged; please try again.';
}
