/** The login page: a token from `kiln token create`, checked with GET /v3/whoami before it is kept. */
import { useState } from "preact/hooks";
import { api } from "../api.js";
import { ErrorBox } from "../components/status.js";
import { saveToken, type Role } from "../session.js";

export function Login(props: { onLogin: (role: Role) => void }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState<Error | undefined>(undefined);
  const submit = async (e: Event) => {
    e.preventDefault();
    try {
      const { role } = await api<{ role: Role }>("GET", "/v3/whoami", undefined, token.trim());
      saveToken(token.trim());
      props.onLogin(role);
    } catch (err) {
      setError(err as Error);
    }
  };
  return (
    <main class="login">
      <h1>Kiln</h1>
      <form onSubmit={(e) => void submit(e)}>
        <label for="token">API token</label>
        <input id="token" name="token" type="password" autocomplete="off" required value={token} onInput={(e) => setToken(e.currentTarget.value)} />
        <p class="hint">
          Make one with <code>kiln token create --role admin</code> (or <code>--role read-only</code>). It is kept in this tab only, until the tab closes.
        </p>
        <button type="submit">Log in</button>
        <ErrorBox error={error} />
      </form>
    </main>
  );
}
