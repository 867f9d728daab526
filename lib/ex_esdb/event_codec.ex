defmodule ExESDB.EventCodec do
  @moduledoc false
  # Between ExESDB.NewEvent / ExESDB.EventRecord and the NIF's tuples.

  alias ExESDB.{EventRecord, NewEvent, UUID}

  @doc "NewEvents (or maps with the same keys) to NIF event tuples."
  @spec encode([NewEvent.t() | map()], module()) :: {:ok, [tuple()]} | {:error, term()}
  def encode(events, serializer) when is_list(events) do
    # One call for the random bytes of every generated event id.
    missing = Enum.count(events, &(not is_map(&1) or Map.get(&1, :event_id) == nil))
    encode(events, serializer, :crypto.strong_rand_bytes(16 * missing), [])
  end

  def encode(other, _), do: {:error, {:invalid_events, other}}

  defp encode([], _serializer, _pool, acc), do: {:ok, :lists.reverse(acc)}

  defp encode([event | rest], serializer, pool, acc) do
    case encode_one(event, serializer, pool) do
      {:ok, tuple, pool} -> encode(rest, serializer, pool, [tuple | acc])
      {:error, _} = error -> error
    end
  end

  defp encode_one(%{event_type: type} = event, serializer, pool)
       when is_binary(type) and type != "" do
    with {:ok, id, pool} <- event_id(Map.get(event, :event_id), pool),
         {:ok, causation} <- optional_uuid(:causation_id, Map.get(event, :causation_id)),
         {:ok, correlation} <- optional_uuid(:correlation_id, Map.get(event, :correlation_id)) do
      {:ok,
       {id, type, payload(serializer, Map.get(event, :data)),
        payload(serializer, Map.get(event, :metadata)), causation, correlation}, pool}
    end
  end

  defp encode_one(%{event_type: type}, _, _), do: {:error, {:invalid_event_type, type}}
  defp encode_one(other, _, _), do: {:error, {:invalid_event, other}}

  @doc """
  A payload for the NIF: the default serializer's bytes are marked as a
  term (`{:term, bytes}`), so the store records that they are and reads
  decode them (and only them); any other serializer's are plain bytes.
  """
  @spec payload(module(), term()) :: binary() | {:term, binary()}
  def payload(ExESDB.Serializer.Term, term), do: {:term, ExESDB.Serializer.Term.serialize(term)}
  def payload(serializer, term), do: serializer.serialize(term)

  # A version 4 UUID from 16 pooled random bytes, or the caller's id.
  defp event_id(nil, <<a::48, _::4, b::12, _::2, c::62, pool::binary>>),
    do: {:ok, <<a::48, 4::4, b::12, 2::2, c::62>>, pool}

  defp event_id(id, pool) do
    case UUID.to_binary(id) do
      {:ok, bin} -> {:ok, bin, pool}
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

  @doc """
  The record format to ask the NIF for: with the default serializer the NIF
  decodes data and metadata itself; `decode` false asks for the stored
  bytes whatever the serializer.
  """
  @spec format(ExESDB.Store.t(), boolean()) :: {module(), boolean()}
  def format(store, decode \\ true),
    do: {EventRecord, decode and store.serializer == ExESDB.Serializer.Term}

  @doc """
  Records from the NIF, deserialized unless the NIF did it already or
  `decode` is false (data and metadata stay the stored bytes).
  """
  @spec finish([EventRecord.t()], ExESDB.Store.t(), boolean()) :: [EventRecord.t()]
  def finish(records, store, decode \\ true)
  def finish(records, _store, false), do: records
  def finish(records, %{serializer: ExESDB.Serializer.Term}, true), do: records
  def finish(records, store, true), do: deserialize(records, store.serializer)

  @doc """
  Deserialize data and metadata of records the NIF built with raw bytes
  (stores with a serializer other than the default).
  """
  @spec deserialize([EventRecord.t()], module()) :: [EventRecord.t()]
  def deserialize(records, serializer) do
    Enum.map(records, fn %EventRecord{data: data, metadata: meta, event_type: type} = r ->
      %{
        r
        | data: serializer.deserialize(data, type: type),
          metadata: serializer.deserialize(meta, type: type)
      }
    end)
  end
end
