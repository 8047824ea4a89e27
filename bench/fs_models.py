"""The FastStream baseline's payload: a pydantic model, as a FastStream user would write it."""

from __future__ import annotations

import pydantic


class Echo(pydantic.BaseModel):
    text: str
    n: int
