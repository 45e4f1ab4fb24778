"""CA errors: one base class, a few kinds, and the single table mapping kind → gRPC code + metric label.

CAError
├── AuthenticationError   caller could not be authenticated (opaque to the client)
├── InvalidCSRError       the CSR is not a parseable, self-signed PKCS#10 request
├── InvalidTTLError       requested TTL above the maximum
├── SigningError          the CA failed to sign
└── CAMaterialError       key material missing, unreadable or inconsistent
"""

from __future__ import annotations

import enum

import grpc


class ErrorKind(enum.Enum):
    AUTHENTICATION = "authentication"
    CSR_PARSING = "csr_parsing"
    TTL = "ttl"
    SIGNING = "signing"
    MATERIAL = "material"


class CAError(Exception):
    """Base of every CA failure; ``kind`` selects the gRPC code and the metric label."""

    kind = ErrorKind.SIGNING


class AuthenticationError(CAError):
    kind = ErrorKind.AUTHENTICATION


class InvalidCSRError(CAError):
    kind = ErrorKind.CSR_PARSING


class InvalidTTLError(CAError):
    kind = ErrorKind.TTL


class SigningError(CAError):
    kind = ErrorKind.SIGNING


class CAMaterialError(CAError):
    kind = ErrorKind.MATERIAL


#: kind → (gRPC status code, metric label: the ``citadel_server_<label>_count`` counter it bumps)
ERROR_TABLE: dict[ErrorKind, tuple[grpc.StatusCode, str]] = {
    ErrorKind.AUTHENTICATION: (grpc.StatusCode.UNAUTHENTICATED, "authentication_failure"),
    ErrorKind.CSR_PARSING: (grpc.StatusCode.INVALID_ARGUMENT, "csr_parsing_err"),
    ErrorKind.TTL: (grpc.StatusCode.INVALID_ARGUMENT, "csr_sign_err"),
    ErrorKind.SIGNING: (grpc.StatusCode.INTERNAL, "csr_sign_err"),
    ErrorKind.MATERIAL: (grpc.StatusCode.UNAVAILABLE, "csr_sign_err"),
}


def grpc_code(error: CAError) -> grpc.StatusCode:
    return ERROR_TABLE[error.kind][0]


def metric_label(error: CAError) -> str:
    return ERROR_TABLE[error.kind][1]
