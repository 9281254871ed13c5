// Sign-up and SRP sign-in against the Cognito user pool through
// amazon-cognito-identity-js. Tokens stay in this page's memory (the
// library's storage is replaced by a Map), never in localStorage where any
// script on the origin could read them; a reload signs the user out.

import {
  AuthenticationDetails,
  CognitoUser,
  CognitoUserAttribute,
  CognitoUserPool,
} from "amazon-cognito-identity-js";

class MemoryStorage {
  #items = new Map();
  setItem(key, value) { this.#items.set(key, String(value)); }
  getItem(key) { return this.#items.has(key) ? this.#items.get(key) : null; }
  removeItem(key) { this.#items.delete(key); }
  clear() { this.#items.clear(); }
}

/** The library's callbacks as promises. */
function call(fn) {
  return new Promise((resolve, reject) => fn((err, result) => (err ? reject(err) : resolve(result))));
}

export class Auth {
  #pool;
  #storage = new MemoryStorage();
  #user = null;

  /** `clientId`: the storefront's app client or the admin console's. */
  constructor(config, clientId) {
    this.#pool = new CognitoUserPool({
      UserPoolId: config.userPoolId,
      ClientId: clientId,
      Storage: this.#storage,
      // Locally the pool is the emulator's; on AWS, Cognito's regional endpoint.
      endpoint: config.cognitoEndpoint || undefined,
    });
  }

  #cognitoUser(email) {
    return new CognitoUser({ Username: email, Pool: this.#pool, Storage: this.#storage });
  }

  signUp(email, password) {
    const attributes = [new CognitoUserAttribute({ Name: "email", Value: email })];
    return call((done) => this.#pool.signUp(email, password, attributes, null, done));
  }

  confirm(email, code) {
    return call((done) => this.#cognitoUser(email).confirmRegistration(code, true, done));
  }

  resendCode(email) {
    return call((done) => this.#cognitoUser(email).resendConfirmationCode(done));
  }

  /** SRP: the password never leaves the page, only the proof of it. */
  signIn(email, password) {
    const user = this.#cognitoUser(email);
    const details = new AuthenticationDetails({ Username: email, Password: password });
    return new Promise((resolve, reject) => {
      user.authenticateUser(details, {
        onSuccess: () => {
          this.#user = user;
          resolve(user);
        },
        onFailure: reject,
        newPasswordRequired: () => reject(new Error("This account must set a new password first.")),
        mfaRequired: () => reject(new Error("This account needs multi-factor sign-in, which this page does not offer yet.")),
        totpRequired: () => reject(new Error("This account needs multi-factor sign-in, which this page does not offer yet.")),
      });
    });
  }

  get signedIn() { return this.#user !== null; }

  /** A valid access token: the library refreshes it with the refresh token when it has expired. */
  async accessToken() {
    if (!this.#user) return null;
    const session = await call((done) => this.#user.getSession(done));
    return session.getAccessToken().getJwtToken();
  }

  /** The signed-in user's email and groups, from the ID and access tokens' claims. */
  async profile() {
    if (!this.#user) return null;
    const session = await call((done) => this.#user.getSession(done));
    const access = session.getAccessToken().decodePayload();
    const id = session.getIdToken().decodePayload();
    return { email: id.email ?? this.#user.getUsername(), groups: access["cognito:groups"] ?? [] };
  }

  signOut() {
    this.#user?.signOut();
    this.#user = null;
    this.#storage.clear();
  }
}
