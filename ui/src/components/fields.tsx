/**
 * Field errors of an RFC 7807 problem (`errors: [{path, message}]`), shown under the field they
 * name; those no field on the form claims are listed together under the form.
 */
import { ApiError, type FieldProblem } from "../api.js";

export function problemsOf(e: Error | undefined): FieldProblem[] {
  return e instanceof ApiError ? e.errors : [];
}

/** The messages for a field: its own path, or paths inside it (`template_dictionary[0].key`). */
export function FieldError(props: { error: Error | undefined; field: string; id: string }) {
  const mine = problemsOf(props.error).filter((p) => p.path === props.field || p.path.startsWith(`${props.field}.`) || p.path.startsWith(`${props.field}[`));
  if (mine.length === 0) return null;
  return (
    // The live region wraps the list: role="alert" on the <ul> itself would hide its list semantics.
    <div class="field-error" id={props.id} role="alert">
      <ul>
        {mine.map((p) => (
          <li>
            {p.path === props.field ? "" : `${p.path}: `}
            {p.message}
          </li>
        ))}
      </ul>
    </div>
  );
}

/** Problems of fields the form does not have, and the problem's detail. */
export function OtherErrors(props: { error: Error | undefined; fields: string[] }) {
  const e = props.error;
  if (!e) return null;
  const rest = problemsOf(e).filter((p) => !props.fields.some((f) => p.path === f || p.path.startsWith(`${f}.`) || p.path.startsWith(`${f}[`)));
  return (
    <div class="error" role="alert">
      <p>{e instanceof ApiError ? `${e.status}: ${e.detail}` : e.message}</p>
      {rest.length ? (
        <ul>
          {rest.map((p) => (
            <li>
              {p.path}: {p.message}
            </li>
          ))}
        </ul>
      ) : null}
    </div>
  );
}
