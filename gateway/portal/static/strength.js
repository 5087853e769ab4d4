// The password check for account sign-up. It runs only in the browser: the server never sees
// the password (it gets a login secret derived from it, account.js), so nothing on the server
// can check it again, and this is the one place these rules live.
//
// A password passes when
//   - it has at least MIN_LENGTH characters: code points after NFC normalisation, so "é" typed
//     as one character or as e + a combining accent counts once, as account.js derives from it;
//   - it is not one of the common passwords of zxcvbn-ts's list (language-common, from breach
//     corpora; gateway/portal/static/vendor/README.md), nor such a password with l33t
//     substitutions, changed case or reversed;
//   - zxcvbn-ts scores it 3 or 4 (an estimated 10^8 guesses or more), where the words the
//     caller passes as `userInputs` (the address, its local part, the organisation's name) and
//     the words in them are known words that cost an attacker almost nothing.
//
// checkPassword() answers { ok, score, problems }: `score` is zxcvbn's estimate, 0..4 (a page's
// meter), `ok` the verdict of all the rules, and `problems` says what to change, as English
// msgids the page translates with its gettext catalogue (marked N_() for `make messages`);
// empty when `ok`. The estimator (about 500 KB) is imported on the first call, not with this
// module, so a page pays for it only when someone types a password.

export const MIN_LENGTH = 12;

// Scores below this are refused: zxcvbn's 3 is "safely unguessable: moderate protection from an
// offline slow-hash scenario" (10^8 to 10^10 guesses).
const MIN_SCORE = 3;
// Pieces of a user input shorter than this are left out: as known words they would match
// almost anywhere and say nothing.
const MIN_PIECE = 3;

/** An English msgid for `make messages` (Babel's N_ keyword): the page translates it. */
const N_ = (msgid) => msgid;

const PROBLEM = {
  // The number is MIN_LENGTH's (tests/test_browser_strength.py holds them together).
  tooShort: N_("Use at least 12 characters."),
  common: N_("This is one of the most common passwords."),
  personal: N_("Leave out your email address and the organisation's name."),
  weak: N_("This password is easy to guess: add a few more words."),
};

let estimator = null;

/** zxcvbn-ts with the common dictionaries and keyboard graphs, made once and shared. */
function loadEstimator() {
  estimator ??= import("./vendor/zxcvbn-ts/zxcvbn-ts.js").then(
    ({ ZxcvbnFactory, dictionary, adjacencyGraphs }) =>
      new ZxcvbnFactory({ dictionary, graphs: adjacencyGraphs }),
    (error) => {
      estimator = null; // a failed load (the network) is tried again on the next call
      throw error;
    },
  );
  return estimator;
}

/** The known words of the user inputs: each input, and the words in it. */
function knownWords(userInputs) {
  const words = new Set();
  for (const input of userInputs) {
    if (typeof input !== "string") throw new TypeError("userInputs must be strings");
    const text = input.normalize("NFC").toLowerCase().trim();
    for (const piece of [text, ...text.split("@"), ...text.split(/[^\p{L}\p{N}]+/u)]) {
      if ([...piece].length >= MIN_PIECE) words.add(piece);
    }
  }
  return [...words];
}

/** The whole password is one entry of the common-password list (or a variant of one). */
function isCommon(sequence) {
  return (
    sequence.length === 1 &&
    sequence[0].pattern === "dictionary" &&
    sequence[0].dictionaryName === "passwords-common"
  );
}

/**
 * Checks a new password against the rules above.
 * @param {string} password as typed
 * @param {{userInputs?: string[]}} options the address, its local part, the organisation's
 *   name: words an attacker who targets this account knows
 * @returns {Promise<{ok: boolean, score: number, problems: string[]}>}
 */
export async function checkPassword(password, { userInputs = [] } = {}) {
  if (typeof password !== "string") throw new TypeError("the password must be a string");
  if (!Array.isArray(userInputs)) throw new TypeError("userInputs must be an array of strings");
  const normalised = password.normalize("NFC");
  const longEnough = [...normalised].length >= MIN_LENGTH;
  const result = (await loadEstimator()).check(normalised, knownWords(userInputs));
  const common = isCommon(result.sequence);
  const strong = result.score >= MIN_SCORE;

  const problems = [];
  if (!longEnough) problems.push(PROBLEM.tooShort);
  if (common) problems.push(PROBLEM.common);
  // A short password hears only "use more characters" (and "common"): one thing at a time.
  if (longEnough && !common && !strong) {
    if (result.sequence.some((match) => match.dictionaryName === "userInputs")) {
      problems.push(PROBLEM.personal);
    }
    problems.push(PROBLEM.weak);
  }
  return { ok: longEnough && !common && strong, score: result.score, problems };
}
