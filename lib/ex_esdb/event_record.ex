defmodule ExESDB.EventRecord do
  @moduledoc """
  A stored event as reads return it.

  `event_number` is the event's version in its stream (1-based, as
  `stream_version`); `position` is its global position in `$all`
  (1-based, gap-free). `created_at` is a `DateTime` and `created_epoch`
  the same instant in microseconds since the Unix epoch.
  """

  @type t :: %__MODULE__{
          event_id: String.t(),
          event_type: String.t(),
          stream_id: String.t(),
          event_number: pos_integer(),
          stream_version: pos_integer(),
          position: pos_integer(),
          data: term(),
          metadata: term(),
          causation_id: String.t() | nil,
          correlation_id: String.t() | nil,
          created_at: DateTime.t(),
          created_epoch: non_neg_integer()
        }

  defstruct [
    :event_id,
    :event_type,
    :stream_id,
    :event_number,
    :stream_version,
    :position,
    :data,
    :metadata,
    :causation_id,
    :correlation_id,
    :created_at,
    :created_epoch
  ]
end
