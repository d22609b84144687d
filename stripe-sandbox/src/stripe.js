/*
 * A Stripe.js stand-in, served by the local Stripe sandbox (development and
 * tests only; a production page loads the real Stripe.js from js.stripe.com).
 *
 * It offers what a Payment Element integration calls: window.Stripe(pk) with
 * elements() (create / mount / update / on / off / destroy, submit),
 * confirmPayment, confirmCardPayment and retrievePaymentIntent. It talks to
 * the sandbox that served it as Stripe.js talks to Stripe: the publishable
 * key and the PaymentIntent's client secret, card details in
 * payment_method_data. The card form is plain markup in the page, not an
 * iframe. Stripe's test cards: 4242 4242 4242 4242 succeeds, 4000 0000 0000
 * 0002 is declined, 4000 0025 0000 3155 asks for 3-D Secure and shows a
 * challenge with "Complete" and "Fail", like Stripe's test page.
 */
(function () {
  'use strict';

  var script = document.currentScript;
  var API = script && script.src ? new URL(script.src).origin : window.location.origin;

  function integrationError(message) {
    var error = new Error(message);
    error.name = 'IntegrationError';
    return error;
  }

  function encode(params) {
    return Object.keys(params)
      .filter(function (k) { return params[k] !== undefined && params[k] !== null; })
      .map(function (k) { return encodeURIComponent(k) + '=' + encodeURIComponent(params[k]); })
      .join('&');
  }

  function apiCall(method, path, params) {
    var url = API + path;
    var init = { method: method, headers: {} };
    if (method === 'GET') {
      url += '?' + encode(params);
    } else {
      init.headers['Content-Type'] = 'application/x-www-form-urlencoded';
      init.body = encode(params);
    }
    return fetch(url, init).then(
      function (response) {
        return response.json().then(function (json) {
          return { ok: response.ok, json: json };
        });
      },
      function () {
        return {
          ok: false,
          json: { error: { type: 'api_connection_error', message: 'Could not reach Stripe (the sandbox).' } },
        };
      }
    );
  }

  function intentIdOf(clientSecret) {
    var at = typeof clientSecret === 'string' ? clientSecret.indexOf('_secret_') : -1;
    if (at <= 0) {
      throw integrationError('Invalid value for clientSecret: it should look like pi_..._secret_...');
    }
    return clientSecret.slice(0, at);
  }

  // --- the card form ------------------------------------------------------

  var STYLE_ID = 'stripe-standin-style';
  var CSS =
    '.stripe-standin{display:grid;gap:.6rem;font:inherit}' +
    '.stripe-standin label{display:grid;gap:.25rem;font-size:.9rem}' +
    '.stripe-standin input{font:inherit;padding:.55rem .6rem;border:1px solid #c5c9d3;border-radius:6px}' +
    '.stripe-standin input[aria-invalid=true]{border-color:#df1b41}' +
    '.stripe-standin .row{display:grid;grid-template-columns:1fr 1fr;gap:.6rem}' +
    '.stripe-standin .error{color:#df1b41;font-size:.85rem;min-height:1em;margin:0}' +
    '.stripe-standin .hint{color:#6b7280;font-size:.75rem;margin:0}' +
    '.stripe-standin-3ds{position:fixed;inset:0;background:rgba(15,23,42,.55);display:grid;place-items:center;z-index:2147483647}' +
    '.stripe-standin-3ds>div{background:#fff;border-radius:8px;padding:1.5rem;max-width:24rem;font-family:system-ui,sans-serif}' +
    '.stripe-standin-3ds button{font:inherit;margin-right:.5rem;padding:.5rem 1rem}';

  function ensureStyle() {
    if (document.getElementById(STYLE_ID)) return;
    var style = document.createElement('style');
    style.id = STYLE_ID;
    style.textContent = CSS;
    (document.head || document.body).appendChild(style);
  }

  var uid = 0;

  function luhn(digits) {
    var sum = 0;
    for (var i = 0; i < digits.length; i++) {
      var d = digits.charCodeAt(digits.length - 1 - i) - 48;
      if (i % 2 === 1) {
        d *= 2;
        if (d > 9) d -= 9;
      }
      sum += d;
    }
    return sum % 10 === 0;
  }

  function validation(code, message, param) {
    return { type: 'validation_error', code: code, message: message, param: param };
  }

  function CardForm(type, options) {
    this.elementType = type;
    this.options = options || {};
    this.listeners = {};
    this.node = null;
    this.root = null;
    this.mounted = false;
    this.destroyed = false;
  }

  CardForm.prototype.fields = function () {
    var q = function (root, name) { return root.querySelector('input[name="' + name + '"]'); };
    return {
      number: q(this.root, 'cardnumber'),
      expiry: q(this.root, 'exp-date'),
      cvc: q(this.root, 'cvc'),
      error: this.root.querySelector('.error'),
    };
  };

  CardForm.prototype.render = function () {
    var id = 'stripe-standin-' + ++uid;
    var root = document.createElement('div');
    root.className = 'stripe-standin';
    root.setAttribute('data-stripe-element', this.elementType);
    root.innerHTML =
      '<label for="' + id + '-number">Card number' +
      '<input id="' + id + '-number" name="cardnumber" inputmode="numeric" autocomplete="cc-number" placeholder="1234 1234 1234 1234" maxlength="23"></label>' +
      '<div class="row">' +
      '<label for="' + id + '-exp">Expiration date' +
      '<input id="' + id + '-exp" name="exp-date" inputmode="numeric" autocomplete="cc-exp" placeholder="MM / YY" maxlength="7"></label>' +
      '<label for="' + id + '-cvc">Security code' +
      '<input id="' + id + '-cvc" name="cvc" inputmode="numeric" autocomplete="cc-csc" placeholder="CVC" maxlength="4"></label>' +
      '</div>' +
      '<p class="error" role="alert" aria-live="polite"></p>' +
      '<p class="hint">Stripe sandbox: 4242 4242 4242 4242 succeeds, 4000 0000 0000 0002 is declined, 4000 0025 0000 3155 asks for 3-D Secure.</p>';
    this.root = root;
    var self = this;
    var f = this.fields();
    [f.number, f.expiry, f.cvc].forEach(function (input) {
      input.addEventListener('input', function () { self.changed(); });
      input.addEventListener('focus', function () { self.emit('focus', { elementType: self.elementType }); });
      input.addEventListener('blur', function () {
        self.showError(self.check(false));
        self.emit('blur', { elementType: self.elementType });
      });
      input.addEventListener('keydown', function (event) {
        if (event.key === 'Escape') self.emit('escape', { elementType: self.elementType });
      });
    });
    if (this.options.disabled) this.setDisabled(true);
  };

  CardForm.prototype.setDisabled = function (disabled) {
    if (!this.root) return;
    var f = this.fields();
    [f.number, f.expiry, f.cvc].forEach(function (input) { input.disabled = !!disabled; });
  };

  CardForm.prototype.values = function () {
    var f = this.fields();
    var digits = f.number.value.replace(/\s+/g, '');
    var raw = f.expiry.value.replace(/\s+/g, '');
    // "12/34", "12 / 34" or "1234"
    var expiry = raw.indexOf('/') >= 0 ? raw.split('/') : [raw.slice(0, -2), raw.slice(-2)];
    return {
      number: digits,
      expMonth: expiry[0] || '',
      expYear: expiry[1] || '',
      cvc: f.cvc.value.trim(),
    };
  };

  // The first problem with what the form holds, or null. `strict`: an empty
  // field is a problem too (on confirm), not only a wrong one (on blur).
  CardForm.prototype.check = function (strict) {
    var v = this.values();
    if (!v.number) {
      if (strict) return validation('incomplete_number', 'Your card number is incomplete.', 'number');
    } else if (!/^\d+$/.test(v.number) || v.number.length > 19) {
      return validation('invalid_number', 'Your card number is invalid.', 'number');
    } else if (v.number.length < 15) {
      if (strict) return validation('incomplete_number', 'Your card number is incomplete.', 'number');
    } else if (!luhn(v.number)) {
      return validation('invalid_number', 'Your card number is invalid.', 'number');
    }
    if (!v.expMonth && !v.expYear) {
      if (strict) return validation('incomplete_expiry', "Your card's expiration date is incomplete.", 'expiry');
    } else if (!/^\d{1,2}$/.test(v.expMonth) || !/^\d{2}$/.test(v.expYear)) {
      if (strict || v.expYear.length > 2) {
        return validation('incomplete_expiry', "Your card's expiration date is incomplete.", 'expiry');
      }
    } else {
      var month = Number(v.expMonth);
      var year = 2000 + Number(v.expYear);
      var now = new Date();
      if (month < 1 || month > 12) {
        return validation('invalid_expiry_month', "Your card's expiration date is invalid.", 'expiry');
      }
      if (year < now.getFullYear() || (year === now.getFullYear() && month < now.getMonth() + 1)) {
        return validation('invalid_expiry_year_past', "Your card's expiration year is in the past.", 'expiry');
      }
    }
    if (!/^\d{3,4}$/.test(v.cvc)) {
      if (strict || v.cvc.length > 0 && !/^\d*$/.test(v.cvc)) {
        return validation('incomplete_cvc', "Your card's security code is incomplete.", 'cvc');
      }
    }
    return null;
  };

  CardForm.prototype.showError = function (error) {
    var f = this.fields();
    f.error.textContent = error ? error.message : '';
    var fieldOf = { number: f.number, expiry: f.expiry, cvc: f.cvc };
    Object.keys(fieldOf).forEach(function (name) {
      fieldOf[name].setAttribute('aria-invalid', error && error.param === name ? 'true' : 'false');
    });
  };

  CardForm.prototype.changed = function () {
    var v = this.values();
    var empty = !v.number && !v.expMonth && !v.expYear && !v.cvc;
    var error = this.check(false);
    var complete = !this.check(true);
    if (!error) this.showError(null);
    var event = { elementType: this.elementType, empty: empty, complete: complete, error: error || undefined };
    if (this.elementType === 'payment') {
      event.value = { type: 'card' };
      event.collapsed = false;
    } else {
      event.brand = v.number.charAt(0) === '4' ? 'visa' : v.number.charAt(0) === '5' ? 'mastercard' : 'unknown';
    }
    this.emit('change', event);
  };

  CardForm.prototype.emit = function (name, event) {
    (this.listeners[name] || []).slice().forEach(function (fn) { fn(event); });
  };

  CardForm.prototype.on = function (name, fn) {
    (this.listeners[name] = this.listeners[name] || []).push(fn);
    if (name === 'ready' && this.mounted) {
      var self = this;
      setTimeout(function () { fn({ elementType: self.elementType }); }, 0);
    }
    return this;
  };

  CardForm.prototype.once = function (name, fn) {
    var self = this;
    var wrapped = function (event) {
      self.off(name, wrapped);
      fn(event);
    };
    return this.on(name, wrapped);
  };

  CardForm.prototype.off = function (name, fn) {
    var list = this.listeners[name] || [];
    this.listeners[name] = fn ? list.filter(function (f) { return f !== fn; }) : [];
    return this;
  };

  CardForm.prototype.mount = function (target) {
    if (this.destroyed) throw integrationError('This Element has already been destroyed. Please create a new one.');
    var node = typeof target === 'string' ? document.querySelector(target) : target;
    if (!node || !node.appendChild) {
      throw integrationError('The selector you specified (' + target + ') applies to no DOM elements that are currently on the page.');
    }
    ensureStyle();
    if (!this.root) this.render();
    node.appendChild(this.root);
    this.node = node;
    this.mounted = true;
    var self = this;
    setTimeout(function () { self.emit('ready', { elementType: self.elementType }); }, 0);
  };

  CardForm.prototype.unmount = function () {
    if (this.root && this.root.parentNode) this.root.parentNode.removeChild(this.root);
    this.mounted = false;
  };

  CardForm.prototype.destroy = function () {
    this.unmount();
    this.destroyed = true;
    this.listeners = {};
    if (this.onDestroy) this.onDestroy();
  };

  CardForm.prototype.update = function (options) {
    this.options = Object.assign({}, this.options, options || {});
    if (options && 'readOnly' in options) this.setDisabled(options.readOnly);
    if (options && 'disabled' in options) this.setDisabled(options.disabled);
  };

  CardForm.prototype.focus = function () {
    if (this.root) this.fields().number.focus();
  };

  CardForm.prototype.blur = function () {
    if (this.root && this.root.contains(document.activeElement)) document.activeElement.blur();
  };

  CardForm.prototype.clear = function () {
    if (!this.root) return;
    var f = this.fields();
    f.number.value = f.expiry.value = f.cvc.value = '';
    this.showError(null);
    this.changed();
  };

  CardForm.prototype.collapse = function () {};

  // The form as Stripe.js sends it, or a validation error (shown in the form).
  CardForm.prototype.paymentMethodData = function () {
    if (!this.mounted) {
      return { error: integrationError('The Payment Element is not mounted.') };
    }
    var error = this.check(true);
    this.showError(error);
    if (error) return { error: error };
    var v = this.values();
    return {
      data: {
        'payment_method_data[type]': 'card',
        'payment_method_data[card][number]': v.number,
        'payment_method_data[card][exp_month]': String(Number(v.expMonth)),
        'payment_method_data[card][exp_year]': String(2000 + Number(v.expYear)),
        'payment_method_data[card][cvc]': v.cvc,
      },
    };
  };

  function Elements(options) {
    this.options = options || {};
    this.created = {};
  }

  Elements.prototype.create = function (type, options) {
    if (type !== 'payment' && type !== 'card') {
      throw integrationError('The sandbox Stripe.js stand-in offers the "payment" and "card" Elements, not "' + type + '".');
    }
    if (this.created[type]) {
      throw integrationError('Can only create one Element of type ' + type + '.');
    }
    if (type === 'payment' && !this.options.clientSecret && !this.options.mode) {
      throw integrationError('In order to create a payment element, you must pass a valid PaymentIntent or SetupIntent client secret when creating the Elements group.');
    }
    var element = new CardForm(type, options);
    var created = this.created;
    element.onDestroy = function () { delete created[type]; };
    created[type] = element;
    return element;
  };

  Elements.prototype.getElement = function (type) {
    return this.created[typeof type === 'string' ? type : 'payment'] || null;
  };

  Elements.prototype.update = function (options) {
    this.options = Object.assign({}, this.options, options || {});
  };

  Elements.prototype.fetchUpdates = function () {
    return Promise.resolve({});
  };

  Elements.prototype.submit = function () {
    var element = this.created.payment || this.created.card;
    if (!element) return Promise.resolve({ error: integrationError('No Payment Element is mounted.') });
    var form = element.paymentMethodData();
    return Promise.resolve(form.error ? { error: form.error } : {});
  };

  // --- 3-D Secure -----------------------------------------------------------

  // Shows Stripe's test challenge; resolves 'pass' or 'fail'.
  function challenge(intent) {
    ensureStyle();
    return new Promise(function (resolve) {
      var overlay = document.createElement('div');
      overlay.className = 'stripe-standin-3ds';
      var title = 'stripe-standin-3ds-title-' + ++uid;
      overlay.innerHTML =
        '<div role="dialog" aria-modal="true" aria-labelledby="' + title + '">' +
        '<h2 id="' + title + '">3D Secure 2 Test Page</h2>' +
        '<p>Stripe sandbox: authenticate the payment of ' +
        (intent.amount / 100).toFixed(2) + ' ' + String(intent.currency).toUpperCase() + '?</p>' +
        '<button type="button" data-outcome="pass">Complete</button>' +
        '<button type="button" data-outcome="fail">Fail</button>' +
        '</div>';
      overlay.addEventListener('click', function (event) {
        var outcome = event.target && event.target.getAttribute && event.target.getAttribute('data-outcome');
        if (!outcome) return;
        overlay.parentNode.removeChild(overlay);
        resolve(outcome);
      });
      document.body.appendChild(overlay);
      overlay.querySelector('button').focus();
    });
  }

  // --- Stripe ---------------------------------------------------------------

  function StripeInstance(key) {
    this._key = key;
  }

  StripeInstance.prototype._registerWrapper = function () {};
  StripeInstance.prototype.registerAppInfo = function () {};

  StripeInstance.prototype.elements = function (options) {
    return new Elements(options);
  };

  StripeInstance.prototype.retrievePaymentIntent = function (clientSecret) {
    var id = intentIdOf(clientSecret);
    return apiCall('GET', '/v1/payment_intents/' + encodeURIComponent(id), {
      key: this._key,
      client_secret: clientSecret,
    }).then(function (answer) {
      return answer.ok ? { paymentIntent: answer.json } : { error: answer.json.error };
    });
  };

  // Confirms with `data` (card details or a payment method id), completes a
  // 3-D Secure challenge if asked, and answers as Stripe.js does.
  StripeInstance.prototype._confirm = function (clientSecret, data, returnUrl) {
    var self = this;
    var id = intentIdOf(clientSecret);
    var params = Object.assign(
      { key: this._key, client_secret: clientSecret, use_stripe_sdk: 'true', return_url: returnUrl },
      data
    );
    return apiCall('POST', '/v1/payment_intents/' + encodeURIComponent(id) + '/confirm', params).then(function (answer) {
      if (!answer.ok) return { error: answer.json.error };
      var intent = answer.json;
      if (intent.status !== 'requires_action') return { paymentIntent: intent };
      return challenge(intent)
        .then(function (outcome) {
          return apiCall('POST', '/sandbox/payment_intents/' + encodeURIComponent(id) + '/authenticate', { outcome: outcome });
        })
        .then(function () { return self.retrievePaymentIntent(clientSecret); })
        .then(function (retrieved) {
          var after = retrieved.paymentIntent;
          if (!after) return retrieved;
          if (after.status === 'requires_payment_method' && after.last_payment_error) {
            return { error: Object.assign({}, after.last_payment_error, { payment_intent: after }) };
          }
          return { paymentIntent: after };
        });
    });
  };

  StripeInstance.prototype.confirmPayment = function (options) {
    options = options || {};
    var elements = options.elements;
    var clientSecret = options.clientSecret || (elements && elements.options.clientSecret);
    if (!clientSecret) {
      return Promise.reject(integrationError('stripe.confirmPayment(): the PaymentIntent client secret is missing.'));
    }
    var redirect = options.redirect || 'always';
    var returnUrl = options.confirmParams && options.confirmParams.return_url;
    if (redirect !== 'if_required' && !returnUrl) {
      return Promise.reject(integrationError(
        "stripe.confirmPayment(): the `confirmParams.return_url` argument is required unless passing `redirect: 'if_required'`"
      ));
    }
    var element = elements && (elements.getElement('payment') || elements.getElement('card'));
    if (!element) {
      return Promise.reject(integrationError('stripe.confirmPayment(): no Payment Element is mounted in `elements`.'));
    }
    var form = element.paymentMethodData();
    if (form.error) return Promise.resolve({ error: form.error });
    return this._confirm(clientSecret, form.data, returnUrl).then(function (result) {
      if (result.paymentIntent && redirect === 'always') {
        var url = new URL(returnUrl, window.location.href);
        url.searchParams.set('payment_intent', result.paymentIntent.id);
        url.searchParams.set('payment_intent_client_secret', clientSecret);
        url.searchParams.set('redirect_status', result.paymentIntent.status);
        window.location.assign(url.toString());
        return new Promise(function () {});
      }
      return result;
    });
  };

  StripeInstance.prototype.confirmCardPayment = function (clientSecret, data) {
    data = data || {};
    var method = data.payment_method;
    var form;
    if (typeof method === 'string') {
      form = { data: { payment_method: method } };
    } else if (method && method.card instanceof CardForm) {
      form = method.card.paymentMethodData();
    } else if (method instanceof CardForm) {
      form = method.paymentMethodData();
    } else {
      return this._confirm(clientSecret, {}, data.return_url);
    }
    if (form.error) return Promise.resolve({ error: form.error });
    return this._confirm(clientSecret, form.data, data.return_url);
  };

  function unsupported(name) {
    return function () {
      return Promise.resolve({
        error: { type: 'invalid_request_error', message: name + ' is not offered by the sandbox Stripe.js stand-in.' },
      });
    };
  }

  StripeInstance.prototype.createToken = unsupported('createToken');
  StripeInstance.prototype.createPaymentMethod = unsupported('createPaymentMethod');
  StripeInstance.prototype.handleNextAction = unsupported('handleNextAction');

  function Stripe(key) {
    if (typeof key !== 'string' || !/^pk_test_./.test(key)) {
      throw integrationError('Invalid API Key provided: the sandbox Stripe.js stand-in takes a pk_test_ publishable key.');
    }
    return new StripeInstance(key);
  }

  // The release train @stripe/stripe-js expects, so it does not warn.
  Stripe.version = 'endive';
  Stripe.sandboxStandIn = true;
  window.Stripe = Stripe;
})();
