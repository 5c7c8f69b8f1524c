class IngestError(Exception):
    """Anything a door refuses. Rendered in the door's own error format in one place per door."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        field: str = "",
        status: int = 400,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.status = status
        # Seconds the client should wait before trying again (sent as Retry-After).
        self.retry_after = retry_after

    def as_dict(self) -> dict[str, str]:
        body = {"code": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        return body
