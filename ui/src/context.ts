/** Who is logged in: the role decides which controls the pages show (the API enforces it anyway). */
import { createContext } from "preact";
import { useContext } from "preact/hooks";
import type { Role } from "./session.js";

export const RoleContext = createContext<Role>("read-only");

/** Whether write controls are shown: admin tokens only; a read-only token would get 403 for each. */
export function useCanWrite(): boolean {
  return useContext(RoleContext) === "admin";
}
