defmodule ExESDB.NewEvent do
  @moduledoc """
  An event to append. `event_id` is a UUID (generated when nil);
  `data` and `metadata` are any terms, made bytes by the store's serializer.
  """

  @type t :: %__MODULE__{
          event_id: String.t() | nil,
          event_type: String.t(),
          data: term(),
          metadata: term(),
          causation_id: String.t() | nil,
          correlation_id: String.t() | nil
        }

  defstruct [:event_id, :event_type, :data, :causation_id, :correlation_id, metadata: %{}]
end
