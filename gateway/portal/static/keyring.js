// The signed-in account's private key, kept between the portal's pages in IndexedDB.
//
// The key is a non-extractable WebCrypto CryptoKey (account.js opens it so): IndexedDB keeps
// the key object, never its bytes, and no script can read them out. It is kept for the one
// account signed in, and forgotten at sign-out or when the server says the session is over.

const DB = "sealgate";
const STORE = "keys";
const CURRENT = "account";

function database() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function transact(mode, work) {
  const db = await database();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const request = work(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(request.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

// Keep `privateKey` (a non-extractable CryptoKey) as the signed-in account's, for `address`,
// with `sealed`, the private key as the server keeps it (sealed under the password's KEK), which
// changing the password re-seals: the server hands it out only at sign-in.
export async function rememberKey(address, privateKey, sealed) {
  if (!(privateKey instanceof CryptoKey) || privateKey.extractable) {
    throw new TypeError("only a non-extractable private key is kept");
  }
  await transact("readwrite", (store) => store.put({ address, privateKey, sealed }, CURRENT));
}

// {address, privateKey, sealed} of the signed-in account, or null.
export async function recallKey() {
  try {
    return (await transact("readonly", (store) => store.get(CURRENT))) || null;
  } catch {
    return null; // no IndexedDB (a private window may refuse it): sign in again
  }
}

export async function forgetKey() {
  try {
    await transact("readwrite", (store) => store.delete(CURRENT));
  } catch {
    // nothing was kept
  }
}
