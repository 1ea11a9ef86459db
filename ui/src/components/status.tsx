/** Small shared pieces: an error box, a job status badge, a copy button. */
import { useState } from "preact/hooks";
import { ApiError } from "../api.js";

export function ErrorBox(props: { error: Error | undefined }) {
  if (!props.error) return null;
  const e = props.error;
  return (
    <p class="error" role="alert">
      {e instanceof ApiError ? `${e.status}: ${e.detail}` : e.message}
    </p>
  );
}

export function Status(props: { status: string }) {
  return <span class={`status status-${props.status}`}>{props.status}</span>;
}

export function CopyButton(props: { text: string; label: string }) {
  const [done, setDone] = useState(false);
  return (
    <button
      type="button"
      onClick={() =>
        void navigator.clipboard.writeText(props.text).then(() => {
          setDone(true);
          setTimeout(() => setDone(false), 1500);
        })
      }
    >
      {done ? "Copied" : props.label}
    </button>
  );
}
