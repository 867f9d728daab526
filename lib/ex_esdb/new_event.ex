defmodule ExESDB.NewEvent do
  @moduledoc """
  An event to append. `data` and `metadata` are any terms, made bytes by
  the store's serializer.

  `event_id` (a UUID) is what makes a retry safe. Build events with
  `new/1`: each gets its id once, when it is built, so appending the same
  list again (after `{:error, :outcome_unknown}` or a lost reply) is
  recognised by the store as the same append and writes nothing twice
  (`ExESDB.Streams`, "Retries"). A struct written as `%NewEvent{}` with
  `event_id: nil` gets a fresh id at every append call: appending it
  again writes it again.
  """

  alias ExESDB.UUID

  @type t :: %__MODULE__{
          event_id: String.t() | nil,
          event_type: String.t(),
          data: term(),
          metadata: term(),
          causation_id: String.t() | nil,
          correlation_id: String.t() | nil
        }

  defstruct [:event_id, :event_type, :data, :causation_id, :correlation_id, metadata: %{}]

  @doc """
  A new event with its own `event_id` (a random UUID unless `fields`
  give one). `fields` are the struct's keys, as a keyword list or a map.

      iex> e = ExESDB.NewEvent.new(event_type: "placed", data: %{total: 10})
      iex> {e.event_type, is_binary(e.event_id)}
      {"placed", true}
  """
  @spec new(keyword() | map()) :: t()
  def new(fields) do
    event = struct!(__MODULE__, fields)
    if event.event_id == nil, do: %{event | event_id: UUID.uuid4()}, else: event
  end
end
