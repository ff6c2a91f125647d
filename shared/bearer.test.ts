import { describe, expect, it } from "vitest";
import { bearerToken } from "./bearer.ts";

describe("bearerToken", () => {
  it("reads the token of a bearer header, whatever the scheme's case and the spacing", () => {
    expect(bearerToken("Bearer abc123")).toBe("abc123");
    expect(bearerToken("bearer   abc123  ")).toBe("abc123");
  });

  it("refuses other forms", () => {
    for (const header of [undefined, "", "Bearer", "Bearer ", "Basic abc", "Bearer a b", "Bearerabc", "xBearer abc"]) {
      expect(bearerToken(header), String(header)).toBeUndefined();
    }
  });
});
