defmodule ExESDB.EventCodec do
  @moduledoc false
  # Between ExESDB.NewEvent / ExESDB.EventRecord and the NIF's tuples.

  alias ExESDB.{EventRecord, NewEvent, UUID}

  @doc "NewEvents (or maps with the same keys) to NIF event tuples."
  @spec encode([NewEvent.t() | map()], module()) :: {:ok, [tuple()]} | {:error, term()}
  def encode(events, serializer) when is_list(events) do
    events
    |> Enum.reduce_while([], fn event, acc ->
      case encode_one(event, serializer) do
        {:ok, tuple} -> {:cont, [tuple | acc]}
        {:error, _} = error -> {:halt, error}
      end
    end)
    |> case do
      {:error, _} = error -> error
      acc -> {:ok, Enum.reverse(acc)}
    end
  end

  def encode(other, _), do: {:error, {:invalid_events, other}}

  defp encode_one(%{event_type: type} = event, serializer) when is_binary(type) and type != "" do
    with {:ok, id} <- event_id(Map.get(event, :event_id)),
         {:ok, causation} <- optional_uuid(:causation_id, Map.get(event, :causation_id)),
         {:ok, correlation} <- optional_uuid(:correlation_id, Map.get(event, :correlation_id)) do
      {:ok,
       {id, type, serializer.serialize(Map.get(event, :data)),
        serializer.serialize(Map.get(event, :metadata)), causation, correlation}}
    end
  end

  defp encode_one(%{event_type: type}, _) when is_atom(type) and type not in [nil, true, false],
    do: {:error, {:invalid_event_type, type}}

  defp encode_one(other, _), do: {:error, {:invalid_event, other}}

  defp event_id(nil), do: {:ok, UUID.uuid4_binary()}

  defp event_id(id) do
    case UUID.to_binary(id) do
      {:ok, bin} -> {:ok, bin}
      :error -> {:error, {:invalid_event_id, id}}
    end
  end

  defp optional_uuid(_key, nil), do: {:ok, nil}

  defp optional_uuid(key, id) do
    case UUID.to_binary(id) do
      {:ok, bin} -> {:ok, bin}
      :error -> {:error, {:"invalid_#{key}", id}}
    end
  end

  @doc "NIF event tuples to EventRecords."
  @spec decode([tuple()], module()) :: [EventRecord.t()]
  def decode(tuples, serializer), do: Enum.map(tuples, &decode_one(&1, serializer))

  defp decode_one(
         {position, stream_id, version, id, type, data, metadata, causation, correlation,
          created_us},
         serializer
       ) do
    %EventRecord{
      event_id: UUID.to_string(id),
      event_type: type,
      stream_id: stream_id,
      event_number: version,
      stream_version: version,
      position: position,
      data: serializer.deserialize(data, type: type),
      metadata: serializer.deserialize(metadata, type: type),
      causation_id: causation && UUID.to_string(causation),
      correlation_id: correlation && UUID.to_string(correlation),
      created_at: DateTime.from_unix!(created_us, :microsecond),
      created_epoch: created_us
    }
  end
end
