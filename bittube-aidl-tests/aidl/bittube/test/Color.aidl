package bittube.test;

/** Colours, backed by a byte. */
@Backing(type="byte")
enum Color {
    RED,
    /** Green is 5. */
    GREEN = 5,
    BLUE,
}
