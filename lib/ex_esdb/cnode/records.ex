defmodule ExESDB.CNode.Records do
  @moduledoc false
  # Records from the events a C node pushes (docs/PROTOCOL.md, "The C
  # node's subscription sessions"): the EventTuple with its payloads
  # tagged by how they were written, built into the map the NIF builds
  # (c_src/nif/records.c): ids as UUID text, created_at a UTC DateTime
  # with microseconds, and with decode true the payloads written as terms
  # decoded (empty bytes nil). Stored terms were checked when written;
  # they are decoded here with :safe (no new atoms).

  alias ExESDB.UUID

  @doc """
  Records of `format` (`{module, decode}`) from pushed event tuples.
  Raises ArgumentError for a term payload that does not decode.
  """
  @spec build([tuple()], {module(), boolean()}) :: [map()]
  def build(tuples, {module, decode}), do: Enum.map(tuples, &record(&1, module, decode))

  defp record(
         {pos, stream, version, id, type, data, meta, causation, correlation, us},
         module,
         decode
       ) do
    %{
      __struct__: module,
      causation_id: opt_uuid(causation),
      correlation_id: opt_uuid(correlation),
      created_at: DateTime.from_unix!(us, :microsecond),
      created_epoch: us,
      data: payload(data, decode),
      event_id: UUID.to_string(id),
      event_number: version,
      event_type: type,
      metadata: payload(meta, decode),
      position: pos,
      stream_id: stream,
      stream_version: version
    }
  end

  defp opt_uuid(nil), do: nil
  defp opt_uuid(id), do: UUID.to_string(id)

  # as c_src/nif/records.c's payload()
  defp payload(bytes, false) when is_binary(bytes), do: bytes
  defp payload({_, bytes}, false), do: bytes
  defp payload("", true), do: nil
  defp payload({_, ""}, true), do: nil
  defp payload(bytes, true) when is_binary(bytes), do: bytes
  defp payload({:term, bytes}, true), do: :erlang.binary_to_term(bytes, [:safe])

  defp payload({:legacy, bytes}, true) do
    :erlang.binary_to_term(bytes, [:safe])
  rescue
    # written before encodings were recorded, and not a term: its bytes
    ArgumentError -> bytes
  end
end
