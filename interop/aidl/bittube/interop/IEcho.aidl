package bittube.interop;

// The interface both peers serve and call in the interop matrix.
interface IEcho {
    // Returns `text` with " echoed" appended.
    @utf8InCpp String echo(@utf8InCpp String text);
    // Writes "world" to `fd` (the caller wrote "hello": the offset is shared).
    void appendWorld(in ParcelFileDescriptor fd);
    // Returns one end of a SEQPACKET tube carrying `count` events (see the crate docs).
    ParcelFileDescriptor openTube(int count);
}
