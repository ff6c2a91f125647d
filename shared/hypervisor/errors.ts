/** Errors raised by the hypervisor layer and the guest image builder. */

/** Base class: every error thrown by shared/hypervisor is one of these. */
export class HypervisorError extends Error {
  override name = "HypervisorError";
}

/** The caller asked for a hypervisor this host cannot run (the API maps it to a 400). */
export class UnsupportedHypervisorError extends HypervisorError {
  override name = "UnsupportedHypervisorError";
  constructor(
    readonly requested: string,
    readonly available: readonly string[],
  ) {
    super(
      `hypervisor "${requested}" is not available on this host; available: ${available.length > 0 ? available.join(", ") : "none"}`,
    );
  }
}

/** QEMU answered a QMP command with an error, or the QMP conversation itself failed. */
export class QmpError extends HypervisorError {
  override name = "QmpError";
  constructor(
    message: string,
    readonly command?: string,
    readonly errorClass?: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/** QEMU could not be started, or a started guest failed to come up (includes QEMU's stderr). */
export class VmBootError extends HypervisorError {
  override name = "VmBootError";
  constructor(
    message: string,
    readonly stderr = "",
    options?: ErrorOptions,
  ) {
    super(stderr ? `${message}: ${stderr.trim()}` : message, options);
  }
}

/** An operation needs a running QEMU process but it is gone. */
export class VmGoneError extends HypervisorError {
  override name = "VmGoneError";
}

/** Saving or loading guest device state (a QEMU migration stream) failed. */
export class MigrationError extends HypervisorError {
  override name = "MigrationError";
}

/** A guest image is missing, malformed or could not be built. */
export class ImageError extends HypervisorError {
  override name = "ImageError";
}

/** A host tool the image builder needs is not installed. */
export class MissingToolError extends ImageError {
  override name = "MissingToolError";
  constructor(
    readonly tool: string,
    readonly installHint: string,
  ) {
    super(`"${tool}" is required but was not found on PATH: ${installHint}`);
  }
}
